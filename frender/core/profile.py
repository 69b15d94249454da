"""The render profile: what a friend's renders must share with the requester's.

Honest Cycles renders agree pixel for pixel only on the same Blender build and
an agreeing machine (see docs/verification.md), so a job pins a profile and
only friends reporting that profile take part.

Rule 1: a friend's profile is its machine's: its Blender build, CPU class and
        the GPU/GL renderer its Blender draws with (``engine`` empty: it renders
        any engine). A job's profile is the requester's own plus the file's
        engine (``scene.render.engine``).
Rule 2: Cycles on the CPU never touches the GPU, so a Cycles job pairs friends
        by build, device and agreement class alone: the digest of a
        calibration render each node makes (blender/_agreement.py), so
        machines are paired by what they render, not by the SIMD level their
        CPU reports. Profiles without a class (logged before classes, or of a
        modelled backend) pair with each other by CPU class, as before. Every other engine (EEVEE, Workbench, an
        engine this code does not know) draws with the GPU, so its friends must
        also report the requester's GL backend, renderer and driver version,
        and a renderer nobody knows ("") matches nothing.
Rule 3: profiles logged before the GL fields, the engine and the agreement
        class existed decode with them empty: their jobs were Cycles jobs and
        stay so, paired by CPU class.
"""

from __future__ import annotations

import attrs
from attrs import frozen

__all__ = ["CPU_ONLY_ENGINES", "RenderProfile"]

CPU_ONLY_ENGINES = frozenset({"", "CYCLES"})
"""Engines whose renders (CPU device) do not depend on the GPU; "" is a profile from before engines were named."""


@frozen(kw_only=True)
class RenderProfile:
    """A Blender build, a device, a CPU class and a GL renderer; a friend renders a job when ``renders`` says so."""

    blender_version: str  # "5.0.1"
    build_hash: str  # Blender's build hash, e.g. "a3db93c5b259"
    device: str = "CPU"
    cpu_class: str = "generic"  # e.g. "x86_64-avx2"; kernels differ across these
    engine: str = ""  # a job's engine, e.g. "CYCLES", "BLENDER_EEVEE"; "" in a friend's profile (Rule 1)
    gl_backend: str = ""  # what Blender's gpu.platform reports: "OPENGL", "VULKAN"; "" if unknown
    gl_renderer: str = ""  # e.g. "llvmpipe (LLVM 15.0.6, 256 bits)"
    gl_version: str = ""  # e.g. "4.5 (Core Profile) Mesa 22.3.6"
    # The calibration's digest (Rule 2), e.g. "cal-1f0e...-denoised"; "" before classes were measured.
    agreement: str = attrs.field(default="", metadata={"omit_if_default": True})

    def machine(self) -> RenderProfile:
        """What a Cycles job pins (Rule 2): the build, device and agreement class (else the CPU class), without
        engine or GL renderer."""
        cpu_class = "" if self.agreement else self.cpu_class
        return attrs.evolve(self, cpu_class=cpu_class, engine="", gl_backend="", gl_renderer="", gl_version="")

    def for_engine(self, engine: str) -> RenderProfile:
        """A job's profile (Rule 1): this machine's, naming ``engine``."""
        return attrs.evolve(self, engine=engine)

    @property
    def needs_gl(self) -> bool:
        """Whether this job's engine draws with the GPU, so friends must share the GL renderer (Rule 2)."""
        return self.engine not in CPU_ONLY_ENGINES

    def renders(self, job: RenderProfile) -> bool:
        """Whether a friend of this profile renders ``job``'s frames as the requester does (Rule 2)."""
        if (self.blender_version, self.build_hash, self.device) != (job.blender_version, job.build_hash, job.device):
            return False  # what machine() keeps, compared without building it: the master asks this per candidate
        if self.agreement != job.agreement or (not job.agreement and self.cpu_class != job.cpu_class):
            return False
        if not job.needs_gl:
            return True
        gl = (job.gl_backend, job.gl_renderer, job.gl_version)
        return bool(job.gl_renderer) and (self.gl_backend, self.gl_renderer, self.gl_version) == gl

    def __str__(self) -> str:
        text = f"Blender {self.blender_version} ({self.build_hash}) {self.device}/{self.cpu_class}"
        if self.agreement:
            text += f" {self.agreement}"
        if self.engine:
            text += f" {self.engine}"
        if self.gl_renderer and (self.needs_gl or not self.engine):
            text += f" GL {self.gl_backend} {self.gl_renderer} {self.gl_version}".rstrip()
        return text
