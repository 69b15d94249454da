"""Rendering devices: a friend offers the GPU it has, and a device Blender cannot find is refused by name."""

from __future__ import annotations

import attrs
import pytest

from frender import blender
from frender.core.profile import RenderProfile


def test_a_device_blender_did_not_find_is_refused_naming_those_it_did():
    """Asking for a GPU type the probe did not list fails before any job, naming the devices there are."""
    blender.check_device("OPTIX", ["CPU", "CUDA", "OPTIX"], "5.0.1")
    with pytest.raises(blender.BlenderNotFound, match="finds no HIP device here; it can render on: CPU, CUDA"):
        blender.check_device("HIP", ["CPU", "CUDA"], "5.0.1")


def test_gpu_friends_pair_only_with_jobs_on_their_device_and_class():
    """A CUDA friend renders a CUDA job of its class, never a CPU job, an OptiX job or another GPU's class."""
    cuda = RenderProfile(blender_version="5.0.1", build_hash="a", device="CUDA", agreement="cal-gpu1-denoised")
    assert cuda.renders(cuda.for_engine("CYCLES"))
    assert not cuda.renders(attrs.evolve(cuda, device="CPU", agreement="cal-cpu-denoised").for_engine("CYCLES"))
    assert not cuda.renders(attrs.evolve(cuda, device="OPTIX").for_engine("CYCLES"))
    assert not cuda.renders(attrs.evolve(cuda, agreement="cal-gpu2-denoised").for_engine("CYCLES"))


@pytest.mark.blender
async def test_a_gpu_this_machine_lacks_is_refused_when_probed():
    """Real Blender asked for a GPU type this machine lacks: the probe says so and names what it can render on."""
    backend = blender.find_backend(device="METAL")  # never on Linux
    with pytest.raises(blender.BlenderNotFound, match="finds no METAL device here; it can render on: CPU"):
        await backend.probe()


async def test_a_modelled_gpu_friend_reports_its_device_and_pairs_with_gpu_jobs_only():
    """`--blender modelled:... --device CUDA`: the friend's profile names CUDA, so it renders a CUDA requester's jobs,
    not a CPU requester's."""
    from frender.apps.blenders import backend_of

    gpu = await backend_of("modelled:0.01", "CUDA").probe()
    cpu = await backend_of("modelled:0.01", "CPU").probe()
    assert (gpu.device, cpu.device) == ("CUDA", "CPU")
    assert gpu.renders(gpu.for_engine("CYCLES")) and not gpu.renders(cpu.for_engine("CYCLES"))
    assert not cpu.renders(gpu.for_engine("CYCLES"))
