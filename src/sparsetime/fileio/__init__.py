"""Files written atomically, shared by every layer that writes (sparse model files, checkpoints,
run records, reports): the lowest layer, importing nothing of sparsetime."""
from .atomic import atomic_open, atomic_write_text, deferred_interrupts

__all__ = ["atomic_open", "atomic_write_text", "deferred_interrupts"]
