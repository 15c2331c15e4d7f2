// Loaded on pages with ipywidgets, between require.js and the widget manager (embed-amd.js);
// see nb_ipywidgets_js in book/_config.yml. Both fixes keep the widgets working offline.
(function () {
  "use strict";
  // 1. embed-amd.js finds its font files (Font Awesome, for widget icons) next to the module
  //    "@jupyter-widgets/html-manager/dist/libembed-amd", which require.js would otherwise look
  //    for under the page's own folder. Point that module path at the vendored copy.
  var here = document.currentScript && document.currentScript.src;
  if (here && window.require && window.require.config) {
    var dist = new URL("../html-manager/", here).href.replace(/\/$/, "");
    window.require.config({ paths: { "@jupyter-widgets/html-manager/dist": dist } });
  }
  // 2. ipywidgets typesets widget labels with the MathJax 2 API (MathJax.Hub.Queue); the book
  //    loads MathJax 3. Give MathJax 3 that one method. MathJax is loaded with "defer", so it
  //    exists by DOMContentLoaded; the widgets render later, on "load". The typesetting waits
  //    for MathJax's own start-up, which may still be running then.
  document.addEventListener("DOMContentLoaded", function () {
    var MJ = window.MathJax;
    if (!MJ || MJ.Hub) return; // no maths on this page, or a real MathJax 2
    MJ.Hub = {
      Queue: function (job) {
        var el = job && job[2];
        var ready = (MJ.startup && MJ.startup.promise) || Promise.resolve();
        var done = ready.then(function () {
          return MJ.typesetPromise ? MJ.typesetPromise(el ? [el] : undefined) : null;
        });
        if (MJ.startup) MJ.startup.promise = done;
        return done;
      },
    };
  });
})();
