"""Verify Hugging Face transformers' SigLIP against conformance kits, then locate planted bugs.

    python examples/verify_transformers.py [OUT_DIR]

Writes three kits (non-square fixed resolution with text length 16, non-square with leftover
pixels, NaFlex with mixed grids), checks `SiglipModel` / `Siglip2Model` (eager attention, CPU
float32) against each, then checks deliberately broken variants and prints the first stage at
which each one leaves its tolerance:

    gelu_erf      exact (erf) GELU instead of tanh   -> img/block00/mlp
    ln_eps        LayerNorm eps 1e-5 instead of 1e-6 -> img/block00/sa
    map_residual  MAP head with a residual           -> img/pooled
    map_unscaled  MAP attention without 1/sqrt(d)    -> img/pooled
"""

import sys
import tempfile
from pathlib import Path

from keras_siglip import conformance


def main(out_dir=None):
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="siglip_kits_"))
    failures = 0
    for name in ("fixture_like", "odd_nonsquare", "naflex"):
        folder = conformance.write_kit(conformance.build_kit(name, seed=0), out_dir / name)
        model_name = "Siglip2Model" if name == "naflex" else "SiglipModel"
        report = conformance.verify(folder, conformance.transformers_fn(folder))
        print(f"\n=== {name}: transformers {model_name} against {folder}")
        print(report)
        failures += not report.ok
        print(f"\n--- {name}: broken variants (first failing stage)")
        for variant, what in conformance.BROKEN_VARIANTS.items():
            broken = conformance.verify(folder, conformance.transformers_fn(folder, variant))
            row = next((r for r in broken.rows if r["stage"] == broken.first_failure), None)
            detail = f"max abs err {row['max_abs']:.2e} > atol {row['atol']:.2e}" if row else ""
            print(f"{variant:<13} {what:<58} -> {broken.first_failure}  {detail}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
