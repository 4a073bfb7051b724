"""The model layer: what a trained model *is*, below training, export, predict and evaluate.

- :mod:`~search.model.registry`: the architectures (``create_model`` over a registry) and
  the layer settings each one takes; its builders beside it: :mod:`~search.model.custom_cnn`,
  :mod:`~search.model.timm_family` (timm backbone + our head) and
  :mod:`~search.model.pretrained_file` (a local weights file's checks);
- :mod:`~search.model.inference`: the one scoring step (``score_batch``, ``predict_split``)
  of validation, evaluation and the perturbed scoring;
- :mod:`~search.model.checkpoint`: a trial's checkpoint folder, written and read;
- :mod:`~search.model.folder`: any model folder (an export or a checkpoint) described and
  rebuilt, the one loader of every command;
- :mod:`~search.model.onnx`: ONNX export with its parity check;
- :mod:`~search.model.latency`: a model's ONNX Runtime latency per image.

It imports the data layer and the base modules only, never training, the search or the
commands (tests/test_layers.py).
"""

from search._lazy import lazy_exports

# create_model has one home, search.model.registry (and the library's front door,
# search.create_model, the same object): it is not re-exported here as well (issue 30).
_EXPORTS = {
    "list_models": "search.model.registry",
    "model_params": "search.model.registry",
    "layer_kwargs": "search.model.registry",
    "build_model": "search.model.checkpoint",
    "input_spec": "search.model.checkpoint",
    "save_checkpoint": "search.model.checkpoint",
    "load_checkpoint_model": "search.model.checkpoint",
    "ModelInfo": "search.model.folder",
    "ModelFolderError": "search.model.folder",
    "read_model_info": "search.model.folder",
    "build_torch_model": "search.model.folder",
    "load_model": "search.model.folder",
    "export_onnx": "search.model.onnx",
    "ExportError": "search.model.onnx",
    "predict_split": "search.model.inference",
    "score_batch": "search.model.inference",
    "model_latency": "search.model.latency",
    "onnx_latency": "search.model.latency",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
