"""The full-sweep accounting behind book/imagenet.md's cost table."""

from __future__ import annotations

import pytest

from multisource.images.protocol_costs import HEUN_EVALS, cost_table, sweep_counts, sweep_work


def test_sweep_counts_by_hand() -> None:
    counts = sweep_counts(("sim1", "sim3"))
    assert (counts.multi_models, counts.single_models) == (8, 38)   # 19 classes x 2 n
    single = 19 * (134_217_728 + 184_549_376)                       # 1c-500, 1c-1000
    multi = 2 * (67_108_864 + 67_108_864 + 100_663_296 + 402_653_184)   # 3c/10c x 500/1000
    assert counts.training_images == single + multi
    assert counts.sampled_images == 5000 * (2 * 2 * (3 + 10) + 38)
    assert counts.encoded_images == 19 * 1000 and counts.reference_images == 19 * 1300
    assert sweep_counts(("sim2", "sim3")) == counts      # any two levels share only the anchor
    with pytest.raises(ValueError):
        sweep_counts(("sim1",))


def test_work_scales_the_benchmark_rates() -> None:
    bench = {"meta": {"device": "cpu"},
             "training": [{"config": "paper", "precision": "fp32", "variant": "plain",
                           "flops_per_step": 800, "batch": 8, "images_per_s": 2.0}],
             "sampling": [{"config": "paper", "precision": "fp32", "flops_per_eval": 40,
                           "batch": 8, "images_per_s_per_eval": 10.0}],
             "sd_vae": {"encode_flops_per_image": 3, "encode_s_per_image": 0.5,
                        "decode_flops_per_image": 7, "decode_s_per_image": 0.25}}
    counts = sweep_counts()
    work = sweep_work(counts, bench)
    assert work["train"]["flops"] == counts.training_images * 100
    assert work["train"]["seconds"] == counts.training_images * 0.5
    assert work["sample"]["flops"] == counts.sampled_images * HEUN_EVALS * 5
    assert work["decode"]["seconds"] == counts.sampled_images * 0.25
    table = cost_table(bench, assumed_tflops=(1.0,))
    assert "| **total, encode to decode** |" in table and "assumed" in table


def test_book_cost_tables_match_the_stored_benchmark() -> None:
    """book/_generated/imagenet_costs.md is what the committed benchmark report gives."""
    import json

    from multisource.common.paths import REPO_ROOT
    from multisource.images.protocol_costs import costs_markdown

    results = REPO_ROOT / "benchmarks" / "results"
    report = results / "diffusion_throughput.json"
    page = REPO_ROOT / "book" / "_generated" / "imagenet_costs.md"
    gpu = [(json.loads(p.read_text()), f"benchmarks/results/{p.name}")
           for p in sorted(results.glob("diffusion_throughput_cuda*.json"))]
    expected = costs_markdown(json.loads(report.read_text()),
                              "benchmarks/results/diffusion_throughput.json", gpu)
    assert page.read_text() == expected, "rerun: python benchmarks/diffusion_throughput.py " \
        "--costs-from benchmarks/results/diffusion_throughput.json"
