"""One precision setting (``ris_lite.precision``): what ``auto`` resolves to, the legacy alias,
the checkpoint record, and the flag on evaluate / predict."""

import warnings

import pytest
import torch
from test_train import tiny_config

from ris_lite import TrainConfig, Trainer, precision
from ris_lite.cli import main
from ris_lite.model.checkpoint import load_checkpoint


@pytest.fixture
def cpu(monkeypatch):
    """Pretend to be an x86-64 CPU with the given flags and bf16 speed-up."""
    def set_cpu(flags, speedup=2.0):
        monkeypatch.setattr(precision.platform, "machine", lambda: "x86_64")
        monkeypatch.setattr(precision, "cpu_flags", lambda: set(flags))
        monkeypatch.setattr(precision, "bf16_speedup", lambda: speedup)
        precision.cpu_has_native_bf16.cache_clear()
        precision.warn_if_emulated.cache_clear()
    yield set_cpu
    precision.cpu_has_native_bf16.cache_clear()
    precision.warn_if_emulated.cache_clear()


def test_auto_is_fp32_on_an_avx2_cpu_without_timing(cpu, monkeypatch):
    cpu({"avx", "avx2", "fma"})
    monkeypatch.setattr(precision, "bf16_speedup", lambda: pytest.fail("no timing needed without bf16 flags"))
    assert precision.resolve_precision("auto", "cpu") == "fp32"


@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16"])
def test_auto_is_bf16_where_the_cpu_has_it_natively(cpu, flag):
    cpu({"avx2", "avx512f", flag}, speedup=1.8)
    assert precision.resolve_precision("auto", "cpu") == "bf16"


def test_auto_trusts_the_timing_over_the_flags(cpu):
    cpu({"avx512f", "avx512_bf16"}, speedup=0.4)  # flags claim bf16, the kernels are slow anyway
    assert precision.resolve_precision("auto", "cpu") == "fp32"


def test_explicit_settings_are_kept_and_bad_ones_refused(cpu):
    cpu({"avx2"})
    assert precision.resolve_precision("fp32", "cpu") == "fp32"
    assert precision.resolve_precision("bf16", "cpu") == "bf16"  # asked for: kept (and warned)
    with pytest.raises(ValueError, match="'fp16' is for CUDA"):
        precision.resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.resolve_precision("half", "cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="fp64")


@pytest.fixture
def gpu(monkeypatch):
    """Pretend the CUDA device has the given compute capability. torch's own bf16 answer is
    True whatever it is, as on a T4, where ``is_bf16_supported()`` counts emulation."""
    def set_gpu(capability):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
        precision.warn_if_emulated.cache_clear()
    yield set_gpu
    precision.warn_if_emulated.cache_clear()


@pytest.mark.parametrize("capability, expected", [((6, 1), "fp16"), ((7, 5), "fp16"), ((8, 0), "bf16"),
                                                  ((9, 0), "bf16")])
def test_auto_on_cuda_is_bf16_only_where_the_gpu_computes_it(gpu, capability, expected):
    """A T4 (7.5) emulates bf16: fp16 with a gradient scaler; an A100 (8.0) or H100 (9.0): bf16.
    The CRF's kernels follow the same rule."""
    from ris_lite.model.crf_kernels import fast_bfloat16

    gpu(capability)
    assert precision.resolve_precision("auto", torch.device("cuda")) == expected
    assert precision.resolve_precision("auto", "cuda:1") == expected
    assert precision.resolve_precision("fp32", "cuda") == "fp32"  # asked for: kept
    assert fast_bfloat16(torch.device("cuda")) is (expected == "bf16")


@pytest.mark.parametrize("capability, warns", [((7, 5), True), ((8, 6), False)])
def test_bf16_asked_for_on_a_gpu_that_emulates_it_warns(gpu, capability, warns):
    gpu(capability)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        precision.warn_if_emulated("bf16", "cuda")
    assert [str(w.message) for w in seen if "emulated" in str(w.message)] == (
        ["bf16 on this GPU is emulated (compute capability below 8, e.g. a T4) and runs slower than fp16; "
         "use --precision auto (fp16 with a gradient scaler)"] if warns else [])


def test_autocast_computes_in_the_resolved_dtype():
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    with precision.autocast("bf16", "cpu"):
        assert torch.nn.functional.conv2d(x, w).dtype == torch.bfloat16
    with precision.autocast("fp32", "cpu"):
        assert torch.nn.functional.conv2d(x, w).dtype == torch.float32
    with pytest.raises(ValueError, match="resolved precision"):
        precision.autocast("auto", "cpu")
    assert precision.grad_scaler("bf16", "cpu") is None and precision.grad_scaler("fp32", "cuda") is None


def test_cpu_bf16_alias_means_bf16_and_warns_once_where_emulated(cpu, tmp_path):
    cpu({"avx2"})
    cfg = tiny_config(cpu_bf16=True)
    assert cfg.precision == "bf16" and "cpu_bf16" not in cfg.to_dict()
    with pytest.warns(RuntimeWarning, match="emulated"):
        Trainer(cfg, tmp_path / "a", device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Trainer(tiny_config(cpu_bf16=True), tmp_path / "b", device="cpu")  # once per process


def test_no_warning_where_bf16_is_native(cpu, tmp_path):
    cpu({"avx512_bf16"}, speedup=2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = Trainer(tiny_config(cpu_bf16=True), tmp_path, device="cpu")
    assert t.precision == "bf16"


def test_legacy_checkpoint_configs_still_load():
    old = {k: v for k, v in tiny_config().to_dict().items() if k != "precision"}
    assert TrainConfig(**old, amp=True, cpu_bf16=True).precision == "bf16"
    assert TrainConfig(**old, amp=True, cpu_bf16=False).precision == "auto"
    assert TrainConfig(**old, amp=False).precision == "fp32"


@pytest.mark.parametrize("asked", ["fp32", "bf16"])
def test_checkpoint_records_the_precision_and_resume_uses_it(tmp_path, asked):
    t = Trainer(tiny_config(precision=asked), tmp_path, device="cpu")
    t.train_step()
    state = load_checkpoint(t.save())
    assert state["config"]["precision"] == asked
    assert state["precision"] == {"requested": asked, "used": asked, "device": "cpu"}
    resumed = Trainer.resume(tmp_path / "last.pt", device="cpu")
    assert resumed.precision == asked and resumed.config.precision == asked
    assert f'"used": "{asked}"' in (tmp_path / "last.json").read_text()


def test_train_step_runs_in_the_resolved_precision(tmp_path, monkeypatch):
    seen = []
    real = precision.autocast

    def spy(p, device):
        seen.append(p)
        return real(p, device)

    monkeypatch.setattr("ris_lite.training.trainer.autocast", spy)
    Trainer(tiny_config(precision="bf16"), tmp_path, device="cpu").train_step()
    assert seen == ["bf16"]


def test_cli_train_records_precision(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--max-steps", "1", "--quiet", "--train-images", "2",
                 "--curriculum", "2,1,3", "--val-images", "2", "--channels", "4", "--precision", "fp32"]) == 0
    assert load_checkpoint(tmp_path / "last.pt")["precision"]["used"] == "fp32"
    assert main(["train", "--out", str(tmp_path / "x"), "--max-steps", "1", "--precision", "fp16", "--quiet"]) == 2
    assert "'fp16' is for CUDA" in capsys.readouterr().err


def test_evaluate_and_predict_accept_the_flag(tmp_path, capsys):
    common = ["--limit", "1", "--max-steps", "3"]
    assert main(["evaluate", "--json", "--precision", "bf16", *common]) == 0
    assert main(["predict", "--out", str(tmp_path), "--precision", "auto", *common]) == 0
    assert main(["evaluate", "--precision", "fp16", *common]) == 2
    assert "'fp16' is for CUDA" in capsys.readouterr().err


def test_bf16_prediction_is_close_to_fp32():
    """bf16 autocast changes masks by rounding only: the same label map almost everywhere."""
    import ris_lite

    model = ris_lite.load_pretrained()
    image, _ = ris_lite.make_rosette(seed=200000)
    a = model.kept_masks(image, max_steps=6)[0]
    b = model.kept_masks(image, max_steps=6, precision="bf16")[0]
    k = min(len(a), len(b))
    assert k >= 1 and (a[:k] - b[:k]).abs().mean() < 0.01


def test_the_timing_works_from_inference_code():
    """``auto`` is often first resolved inside ``torch.no_grad`` (predict, the CRF)."""
    with torch.no_grad():
        assert precision.bf16_speedup(repeats=1) > 0
    with torch.inference_mode():
        assert precision.bf16_speedup(repeats=1) > 0


def test_cpu_name_reads_the_model_name_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9B14\nflags\t: fpu avx2\n")
    assert precision.cpu_name(info) == "AMD EPYC 9B14"
    info.write_text("processor\t: 0\nFeatures\t: fp asimd\n")  # no model name line (e.g. some ARM kernels)
    assert precision.cpu_name(info) == (precision.platform.processor() or precision.platform.machine())
    assert precision.cpu_name(tmp_path / "missing") == (precision.platform.processor() or precision.platform.machine())
