import json

import numpy as np

import models
from bench.inference_ceiling import fold_cells, main, multiply_accumulates, rebuild_in_bfloat16
from models.io import save_model


def test_multiply_accumulates_count_every_cell_and_position():
    model = models.get_model("cellnet_tiny")
    # Cells of 32x32 (the 64x256 strip halved, cut in four): 3x3 convolutions 1->4 at 32x32, 4->8 at 16x16,
    # 8->8 at 8x8, for each of the 4 cells; then dense 8->8 and 8->10 at each of the 4 positions.
    per_cell = 32 * 32 * 9 * 1 * 4 + 16 * 16 * 9 * 4 * 8 + 8 * 8 * 9 * 8 * 8
    assert multiply_accumulates(model) == 4 * per_cell + 4 * (8 * 8 + 8 * 10)


def test_folded_and_bfloat16_variants_read_like_the_model():
    model = models.get_model("cellnet_tiny")
    images = np.random.default_rng(0).integers(0, 256, (3, 144, 256, 3), dtype=np.uint8)
    expected = np.asarray(model.predict_on_batch(images))
    folded = fold_cells(model)
    np.testing.assert_allclose(np.asarray(folded.predict_on_batch(images)), expected, atol=1e-5)
    bfloat16 = rebuild_in_bfloat16(model)
    assert bfloat16.get_layer("character_scores").compute_dtype == "bfloat16"
    np.testing.assert_allclose(np.asarray(bfloat16.predict_on_batch(images), dtype="float32"), expected, atol=0.05)
    assert fold_cells(models.get_model("shawon")) is None  # No cell reader to fold.


def test_probe_writes_every_variant(tmp_path):
    path = tmp_path / "tiny.keras"
    save_model(models.get_model("cellnet_tiny"), path)
    output = tmp_path / "ceiling.json"
    result = main(["--model", str(path), "--batch-size", "4", "--seconds", "0.01", "--output", str(output)])
    assert json.loads(output.read_text()) == result
    variants = {row["variant"]: row for row in result["variants"]}
    assert len(variants) == 4
    # Cutting the model after its preprocessing and feeding the cut-off outputs back must read the same.
    assert variants["network alone (preprocessing free)"]["largest_score_difference"] < 1e-5
    assert variants["cells folded into the batch"]["largest_score_difference"] < 1e-5
    assert all(row["images_per_second"] > 0 and row["gflop_per_second"] > 0 for row in variants.values())
