"""The render profile: what a friend's renders must share with the requester's.

Honest Cycles renders agree pixel for pixel only on the same Blender build and
CPU class (see docs/verification.md), so a job pins a profile and only friends
reporting exactly that profile take part.
"""

from __future__ import annotations

from attrs import frozen

__all__ = ["RenderProfile"]


@frozen(kw_only=True)
class RenderProfile:
    """A Blender build, a device and a CPU class; equal profiles render alike."""

    blender_version: str  # "5.0.1"
    build_hash: str  # Blender's build hash, e.g. "a3db93c5b259"
    device: str = "CPU"
    cpu_class: str = "generic"  # e.g. "x86_64-avx2"; kernels differ across these

    def __str__(self) -> str:
        return f"Blender {self.blender_version} ({self.build_hash}) {self.device}/{self.cpu_class}"
