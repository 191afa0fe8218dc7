"""Bridges to other tools, each behind an optional extra and imported only when asked for.

* :mod:`.huggingface` -- ``DynamicSparsityCallback`` for ``transformers.Trainer`` (``sparsetime[hf]``);
* :mod:`.lightning` -- ``DynamicSparsityCallback`` for Lightning's ``Trainer`` (``sparsetime[lightning]``);
* :mod:`.torch_prune` -- masks to and from ``torch.nn.utils.prune`` (``weight_orig`` / ``weight_mask``);
* :mod:`.export_run` -- a run directory's model as a dense state_dict or a sparse safetensors file;
* :mod:`.run_table` -- one line per run directory (``sparsetime runs``).

Importing this package imports none of the optional libraries.
"""
