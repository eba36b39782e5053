"""Export a trained classifier or torchvision-engine detector to TorchScript, ONNX and
``torch.export``, each checked against the eager model on a sample image.

``tools/export_model.py`` is the command line (as Detectron2's ``tools/deploy/export_model.py``).
"""

from resdet.export.exporters import EXPORTERS, ExportResult, export_and_check
from resdet.export.load import Exportable, load_exportable

__all__ = ["EXPORTERS", "Exportable", "ExportResult", "export_and_check", "load_exportable"]
