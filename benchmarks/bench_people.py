"""The people experiment's targets on the stand-in test split (chapter 11).

Measured in one run, on the same 200 test scenes:

* RIS (the people configuration: FCN-8s at 1/8 width, 1 x 1 gates) -- AP^r(0.5) and AP^r
  averaged over IoU 0.1..0.9, VOC/SDS protocol;
* the non-learned baseline -- row-median foreground, connected components -- with its
  threshold and minimum area tuned on the 64 validation scenes;
* connected components of the TRUE foreground (an oracle: what separating touching and
  overlapping figures is worth beyond finding them);
* the occlusion test: Kendall's tau between the step at which RIS emits each matched figure
  and the figure's depth (+1 = front to back), mean with a 95 % bootstrap interval over the
  images with two or more matched figures; and how often the first matched emission is the
  nearest figure, against chance.

Writes ``OUT`` (JSON; default ``ris_lite/pretrained/people_test.json``, what the chapter and
the README quote).

    python benchmarks/bench_people.py                       # the shipped "people" model
    python benchmarks/bench_people.py --checkpoint runs/people/last.pt --out /tmp/people.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import ris_lite
from ris_lite.data.people import PeopleDataset
from ris_lite.evaluation.people_eval import occlusion_summary, score_people, tune_people_baseline
from ris_lite.model.checkpoint import model_from_checkpoint

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default=None, help="a training checkpoint (default: the shipped 'people')")
    p.add_argument("--limit", type=int, default=None, help="only the first N test scenes")
    p.add_argument("--max-steps", type=int, default=10)
    p.add_argument("--out", default=str(ROOT / "ris_lite" / "pretrained" / "people_test.json"))
    a = p.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    model = model_from_checkpoint(a.checkpoint) if a.checkpoint else ris_lite.load_pretrained("people")
    size = tuple(model.config.input_size)
    val, test = PeopleDataset("val", size=size), PeopleDataset("test", length=a.limit, size=size)
    baseline = tune_people_baseline([val[i][0] for i in range(len(val))], [val[i][1].numpy() for i in range(len(val))])
    t0 = time.perf_counter()
    result = score_people(model, test, baseline, a.max_steps)
    seconds = time.perf_counter() - t0
    occlusion = occlusion_summary(result["occlusion"])
    report = {"model": a.checkpoint or "people (shipped)", "test_scenes": len(test), "max_steps": a.max_steps,
              "ris": result["ris"], "baseline": result["baseline"], "baseline_params": baseline,
              "oracle_foreground": result["oracle_foreground"], "occlusion": occlusion,
              "failures": result["failures"],
              "seconds": round(seconds, 1), "torch": torch.__version__}
    Path(a.out).write_text(json.dumps(report, indent=1) + "\n")
    r, b, o = result["ris"], result["baseline"], result["oracle_foreground"]
    print(f"{'':26s} AP^r(0.5)  AP^r Ave   ({len(test)} test scenes)")
    for name, v in (("RIS (people config)", r), ("baseline (tuned on val)", b), ("oracle foreground + CC", o)):
        print(f"{name:26s} {100 * v['ap50']:9.1f} {100 * v['ap_mean']:9.1f}")
    print(f"occlusion: Kendall tau {occlusion['tau']:+.2f} [{occlusion['tau_low']:+.2f}, {occlusion['tau_high']:+.2f}] "
          f"over {occlusion['images']} scenes; nearest figure first {100 * occlusion['front_first']:.0f}% "
          f"(chance {100 * occlusion['front_first_chance']:.0f}%)")
    f = result["failures"]
    print(f"failures: {f['joined']} joined, {f['missed']} missed, {f['hallucinated']} hallucinated "
          f"({f['people']} people, {f['predicted']} predicted)")
    print(f"wrote {a.out} ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
