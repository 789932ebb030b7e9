"""Exports a `.keras` model for serving: a TensorFlow SavedModel or an ONNX file.

    python export.py reference/reference.keras --format saved_model --output exported/reference
    python export.py reference/reference.keras --format onnx --output exported/reference.onnx

Both take what the `.keras` file takes, the raw image: a float32 batch
(batch, height, width, 3) of pixel values 0-255, as decoded from the PNG
(the cropping, scaling and colour removal are inside the network), and give
the same scores (`models.registry` describes their shapes):

    import tensorflow as tf                      # SavedModel (Keras's `model.export`)
    exported = tf.saved_model.load("exported/reference")  # keep it: its variables die with it
    scores = exported.serve(images)              # also the signature "serving_default"

    import onnxruntime                           # ONNX: no TensorFlow needed
    session = onnxruntime.InferenceSession("exported/reference.onnx")
    scores = session.run(None, {"image": images})[0]

The ONNX file is written by Keras's `model.export(format="onnx")`, which
converts the SavedModel graph with tf2onnx (pinned in requirements.txt). What
the kit records about the model (`models.metadata`: alphabet, lengths, kind
of scores) goes with both: the SavedModel folder holds `captcha_kit.json`,
the ONNX file the same JSON as its metadata property `captcha_kit`.
`read_export_metadata` reads either back. Turning scores into text stays the
kit's (`models.decoding`) or the reader's own.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from models.metadata import METADATA_MEMBER, ModelMetadata, model_metadata

FORMATS = ("saved_model", "onnx")
ONNX_METADATA_KEY = "captcha_kit"


def _input_signature(model):
    import tensorflow as tf

    # One tensor, not Keras's one-element list, so that callers pass the images themselves.
    return [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="image")]


def export_model(model, output: str | Path, export_format: str, metadata: ModelMetadata | None = None) -> Path:
    """Writes `model` as a SavedModel folder or an ONNX file at `output`, atomically.

    Args:
        model: A Functional model with one image input.
        output: The folder (saved_model) or `.onnx` file to create; must not exist.
        export_format: One of `FORMATS`.
        metadata: What to record beside the network (default: what `model` records).

    Returns:
        The path written.

    Raises:
        ValueError: Unknown format, an ONNX name without `.onnx`, an existing output,
            or a model with more than one input.
    """
    output = Path(output)
    if export_format not in FORMATS:
        raise ValueError(f"Unknown export format. Received: {export_format!r}; expected one of {FORMATS}")
    if export_format == "onnx" and output.suffix != ".onnx":
        raise ValueError(f"ONNX files must end in .onnx. Received: {output}")
    if output.exists():
        raise ValueError(f"{output} exists; choose a new path (exports are never written over).")
    if len(model.inputs) != 1:
        raise ValueError(f"Only models with one image input are exported. Received: {len(model.inputs)} inputs")
    metadata = metadata or model_metadata(model)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.tmp{os.getpid()}")
    try:
        if export_format == "saved_model":
            model.export(
                str(temporary), format="tf_saved_model", input_signature=_input_signature(model), verbose=False
            )
            if metadata is not None:
                (temporary / METADATA_MEMBER).write_text(metadata.to_json(), encoding="utf-8")
        else:
            _export_onnx(model, temporary, metadata)
        os.replace(temporary, output)
    finally:
        if temporary.is_dir():
            shutil.rmtree(temporary)
        else:
            temporary.unlink(missing_ok=True)
    return output


def _export_onnx(model, path: Path, metadata: ModelMetadata | None) -> None:
    try:
        import onnx
        import tf2onnx  # noqa: F401  (what Keras converts with; imported here for a clear message)
    except ImportError as error:
        raise ValueError(f"ONNX export needs tf2onnx and onnx: pip install -r requirements.txt ({error})") from error
    model.export(str(path), format="onnx", input_signature=_input_signature(model), verbose=False)
    if metadata is not None:
        exported = onnx.load(str(path))
        onnx.helper.set_model_props(exported, {ONNX_METADATA_KEY: metadata.to_json()})
        onnx.save(exported, str(path))


def read_export_metadata(path: str | Path) -> ModelMetadata | None:
    """What an export made by `export_model` records (a SavedModel folder or an ONNX file), or None."""
    path = Path(path)
    if path.is_dir():
        member = path / METADATA_MEMBER
        return ModelMetadata.from_json(member.read_text(encoding="utf-8")) if member.is_file() else None
    import onnx

    properties = {entry.key: entry.value for entry in onnx.load(str(path), load_external_data=False).metadata_props}
    return ModelMetadata.from_json(properties[ONNX_METADATA_KEY]) if ONNX_METADATA_KEY in properties else None
