"""Evaluation the field's way: videolm as an lmms-eval model, and offline video tasks.

- :mod:`videolm.eval.lmms`: the plugin's chat and simple classes (``lmms-eval --model videolm``) and
  :func:`~videolm.eval.lmms.evaluate`, the thin wrapper over lmms-eval's ``simple_evaluate`` behind
  ``videolm eval``. Needs the ``eval`` extra (``pip install 'videolm[eval]'``: lmms-eval 0.7.3, which
  pins ``av<16`` and an exact ``wandb``, so it stays out of the core install).
- :mod:`videolm.eval.tasks`: QA, multiple-choice and caption tasks over the synthetic corpus, written as
  a task folder for ``--include_path`` (``videolm eval tasks --data DIR --out DIR``); no downloads.

This package imports neither lmms-eval nor torch: lmms-eval loads :func:`model_manifest` through the
``lmms_eval.models`` entry point while it builds its model registry.
"""

MODEL_ID = "videolm"


class MissingDependency(ImportError, LookupError):
    """An optional dependency is missing or unusable (``videolm eval`` shows it as a one-line user error)."""


def model_manifest():
    """The ``ModelManifest`` of the entry point: model id ``videolm``, chat class
    :class:`~videolm.eval.lmms.VideolmChat` (generation tasks, the default) and simple class
    :class:`~videolm.eval.lmms.VideolmSimple` (``--force_simple``: multiple-choice and perplexity tasks)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, chat_class_path="videolm.eval.lmms.VideolmChat",
                         simple_class_path="videolm.eval.lmms.VideolmSimple")
