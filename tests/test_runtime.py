"""`train_params.bf16: auto`: precision and attention path chosen by measurement, and cached.

Most tests inject a fake timer (seconds per training step for each candidate), so the decision
logic is tested without timing anything; one smoke test runs the real probe on a tiny model.
"""
import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from vitlib import config as C
from vitlib import runtime
from vitlib.model import ViT, ViTConfig
from vitlib.runtime import Precision, num_threads, resolve_precision

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
CPU = torch.device("cpu")
FP32, BF16_FUSED, BF16_MANUAL = Precision(False, True), Precision(True, True), Precision(True, False)


class FakeTimer:
    """Seconds per step for each candidate, counting the calls (a probe calls it several times)."""

    def __init__(self, seconds: dict[Precision, float]):
        self.seconds, self.calls = seconds, 0

    def __call__(self, p: Precision) -> float:
        self.calls += 1
        return self.seconds[p]


@pytest.fixture(autouse=True)
def quiet_machine(monkeypatch, tmp_path):
    """Every test here: a cache in tmp_path (never ~/.cache), and a machine never 'busy', so that
    load from other programs cannot stop a probe from being cached."""
    monkeypatch.setenv(runtime.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(runtime, "machine_busy", lambda: None)


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return ViT(ViTConfig.tiny())


def test_faster_bf16_is_chosen_with_its_faster_attention_path(tiny, capsys, tmp_path):
    timer = FakeTimer({FP32: 0.100, BF16_FUSED: 0.200, BF16_MANUAL: 0.060})
    choice = resolve_precision("auto", tiny, 64, CPU, timer=timer)
    assert choice == BF16_MANUAL and timer.calls > 3
    line = capsys.readouterr().out.strip()
    # one line, fp32 first, every candidate's img/s (64 images / seconds per step), and the cache
    assert line.startswith("precision auto: bf16 + manual attention (fp32 fused 640 img/s, ")
    assert "bf16 fused 320" in line and "bf16 manual 1,067" in line and "precision.json" in line
    assert (tmp_path / "cache" / "precision.json").is_file()


@pytest.mark.parametrize("fp32_s, bf16_s, want", [
    (0.100, 0.095, FP32),          # bf16 5 % faster: not worth rounding the activations
    (0.100, 0.101, FP32),          # bf16 slower (a CPU without bf16 instructions)
    (0.100, 0.090, BF16_MANUAL),   # 11 % faster: bf16
])
def test_bf16_must_be_at_least_ten_percent_faster(tiny, fp32_s, bf16_s, want):
    timer = FakeTimer({FP32: fp32_s, BF16_FUSED: 1.0, BF16_MANUAL: bf16_s})
    assert resolve_precision("auto", tiny, 64, CPU, timer=timer) == want


def test_pick_rule():
    assert runtime.pick({FP32: 100.0, BF16_FUSED: 150.0, BF16_MANUAL: 120.0}, FP32) == BF16_FUSED
    assert runtime.pick({FP32: 100.0, BF16_FUSED: 109.0, BF16_MANUAL: 105.0}, FP32) == FP32
    assert runtime.pick({FP32: 100.0}, FP32) == FP32  # no bf16 candidate ran


@pytest.mark.parametrize("setting, bf16", [("true", True), (True, True), ("false", False), (False, False),
                                           ("False", False)])
def test_an_explicit_setting_wins_and_does_not_probe(tiny, setting, bf16, tmp_path, capsys):
    timer = FakeTimer({FP32: 1.0, BF16_FUSED: 0.01, BF16_MANUAL: 0.01})  # bf16 would win a probe
    choice = resolve_precision(setting, tiny, 64, CPU, timer=timer)
    # the attention path is the config's fused_attn, as written
    assert choice == Precision(bf16, True) and timer.calls == 0
    manual = ViT(replace(ViTConfig.tiny(), fused_attn=False))
    assert resolve_precision(setting, manual, 64, CPU, timer=timer) == Precision(bf16, False)
    assert timer.calls == 0 and not (tmp_path / "cache").exists() and capsys.readouterr().out == ""


def test_auto_on_cuda_follows_the_gpu_without_probing(tiny, monkeypatch):
    timer = FakeTimer({})
    for supported in (True, False):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: supported)
        assert resolve_precision("auto", tiny, 64, torch.device("cuda"), timer=timer) == Precision(supported, True)
    assert timer.calls == 0


def test_the_decision_is_cached_per_machine_and_model_shape(tiny, tmp_path, capsys):
    timer = FakeTimer({FP32: 0.100, BF16_FUSED: 0.300, BF16_MANUAL: 0.050})
    first = resolve_precision("auto", tiny, 64, CPU, timer=timer)
    probed = timer.calls
    assert probed > 0
    again = resolve_precision("auto", tiny, 64, CPU, timer=timer)
    assert again == first and timer.calls == probed  # read from the cache: no probe
    assert "cached in" in capsys.readouterr().out.splitlines()[-1]
    resolve_precision("auto", tiny, 32, CPU, timer=timer)  # another batch size: a new probe
    assert timer.calls == 2 * probed
    wider = ViT(replace(ViTConfig.tiny(), emb_dim=64))
    resolve_precision("auto", wider, 64, CPU, timer=timer)  # another architecture: a new probe
    assert timer.calls == 3 * probed
    same_shape = ViT(replace(ViTConfig.tiny(), pos_init_std=0.5))  # only the initialisation differs
    assert resolve_precision("auto", same_shape, 64, CPU, timer=timer) == first
    assert timer.calls == 3 * probed
    entries = json.loads((tmp_path / "cache" / "precision.json").read_text())["entries"]
    assert len(entries) == 3
    entry = next(e for e in entries.values() if e["batch_size"] == 64 and e["choice"]["bf16"])
    assert entry["machine"]["threads"] == torch.get_num_threads() and entry["machine"]["cpu"]


def test_another_thread_count_is_another_machine(tiny):
    timer = FakeTimer({FP32: 0.100, BF16_FUSED: 0.300, BF16_MANUAL: 0.050})
    resolve_precision("auto", tiny, 64, CPU, timer=timer)
    probed = timer.calls
    with num_threads(1 if torch.get_num_threads() > 1 else 2):
        resolve_precision("auto", tiny, 64, CPU, timer=timer)
    assert timer.calls == 2 * probed


def test_a_busy_machine_or_a_broken_cache_file_means_measure_again(tiny, monkeypatch, tmp_path, capsys):
    timer = FakeTimer({FP32: 0.100, BF16_FUSED: 0.300, BF16_MANUAL: 0.050})
    monkeypatch.setattr(runtime, "machine_busy", lambda: "the machine was busy, load 9.0 on 2 cores")
    resolve_precision("auto", tiny, 64, CPU, timer=timer)
    assert "not cached: the machine was busy" in capsys.readouterr().out
    assert not (tmp_path / "cache" / "precision.json").exists()
    monkeypatch.setattr(runtime, "machine_busy", lambda: None)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "precision.json").write_text("{not json")
    probed = timer.calls
    assert resolve_precision("auto", tiny, 64, CPU, timer=timer) == BF16_MANUAL
    assert timer.calls == 2 * probed and json.loads((tmp_path / "cache" / "precision.json").read_text())


def test_fused_attn_false_in_the_config_rules_out_the_fused_path():
    model = ViT(replace(ViTConfig.tiny(), fused_attn=False))
    timer = FakeTimer({Precision(False, False): 0.100, BF16_MANUAL: 0.050})  # a fused key would KeyError
    assert resolve_precision("auto", model, 64, CPU, timer=timer) == BF16_MANUAL


def test_a_bf16_candidate_that_cannot_run_is_skipped(tiny):
    def timer(p: Precision) -> float:
        if p.bf16:
            raise RuntimeError("this build has no CPU bf16")
        return 0.1
    assert resolve_precision("auto", tiny, 64, CPU, timer=timer) == FP32


def test_under_ddp_rank_0_decides_for_every_rank(tiny):
    class OtherRank:  # rank 1 of 2: receives rank 0's flags through the all-reduce
        enabled, main = True, False

        def sum(self, values):
            assert values == [0.0, 0.0]  # contributes nothing of its own
            return [1.0, 0.0]            # rank 0 chose bf16 + manual attention
    timer = FakeTimer({})
    assert resolve_precision("auto", tiny, 64, CPU, dist=OtherRank(), timer=timer) == BF16_MANUAL
    assert timer.calls == 0


def test_bad_values_name_the_allowed_ones(tiny, tmp_path):
    raw = yaml.safe_load((CONFIGS / "quick.yaml").read_text())
    with pytest.raises(ValueError, match=r"train_params\.bf16 = 'maybe'; choose auto, true or false"):
        C.parse_config(C.merge(raw, {"train_params": {"bf16": "maybe"}}))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(C.merge(raw, {"train_params": {"bf16": "fast"}})))
    with pytest.raises(ValueError, match=r"bad\.yaml.*bf16 = 'fast'.*auto, true or false"):
        C.load_config(bad)
    with pytest.raises(ValueError, match="auto, true or false"):
        resolve_precision("maybe", tiny, 64, CPU)


def test_train_uses_the_measured_choice(monkeypatch, tmp_path, capsys):
    """End to end: `bf16: auto` in a config -> the probe's choice is what the run trains with."""
    from vitlib.train import train
    fake = FakeTimer({FP32: 0.100, BF16_FUSED: 0.300, BF16_MANUAL: 0.050})
    monkeypatch.setattr(runtime, "step_timer", lambda model, batch_size, device: fake)
    cfg = {"dataset_params": {"train_limit": 128, "val_limit": 64, "test_limit": 64},
           "model_params": {"image_height": 16, "image_width": 16, "patch_height": 4, "patch_width": 4,
                            "emb_dim": 32, "n_layers": 2, "n_heads": 2, "ff_dim": 64},
           "train_params": {"task_name": "runs/auto", "batch_size": 64, "epochs": 1, "bf16": "auto",
                            "num_threads": 1}}
    res = train(cfg, out_dir=tmp_path, progress=False)
    assert res["bf16"] is True and fake.calls > 0
    assert all(not b.attn.fused for b in res["model"].blocks)  # the manual path, as the probe chose
    assert res["model"].config.fused_attn is True               # the config (and checkpoint) unchanged
    assert "precision auto: bf16 + manual attention" in capsys.readouterr().out


def test_real_probe_on_a_tiny_model(tmp_path):
    """No fake: time the real candidates on a tiny model; any valid choice will do, but it must be
    cached, leave the global RNG where it was, and take only a few seconds. One thread: on a
    shared runner a second thread can wait for a busy core for a long time."""
    torch.manual_seed(0)
    model = ViT(ViTConfig.tiny())
    before = model.state_dict()["head.weight"].clone()
    rng = torch.get_rng_state()
    with num_threads(1):
        t0 = time.perf_counter()
        choice = resolve_precision("auto", model, 16, CPU)
        assert time.perf_counter() - t0 < 5
    assert choice in (FP32, BF16_FUSED, BF16_MANUAL)
    assert torch.equal(torch.get_rng_state(), rng)      # the run's random stream is untouched
    assert torch.equal(model.state_dict()["head.weight"], before) and model.head.weight.grad is None
    (entry,) = json.loads((tmp_path / "cache" / "precision.json").read_text())["entries"].values()
    assert set(entry["img_per_s"]) == {"fp32 fused", "bf16 fused", "bf16 manual"}
    assert all(v > 0 for v in entry["img_per_s"].values())
    assert entry["choice"] == {"bf16": choice.bf16, "fused_attn": choice.fused_attn}
