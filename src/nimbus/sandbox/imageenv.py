"""What differs when an execution environment runs a container image (issue 19): the image's unpacked tree
is the runtime's read-only root (the namespaces backend binds it at IMAGE_ROOT and the launcher chroots into
it before starting extensions and exec'ing the image's ENTRYPOINT + CMD in its WORKDIR), and the runtime's
environment is the image's ENV, then the function's variables, then Lambda's own."""

from __future__ import annotations

import json

from nimbus.control.specs import ImageRun, VersionSpec
from nimbus.errors import InvalidRuntime, ResourceConflict, ResourceNotReady

IMAGE_ROOT = "/.nimbus-image"  # where the backend mounts the image, inside the sandbox, before the chroot
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Variables an image may set itself (AWS's base images do: LAMBDA_TASK_ROOT, LD_LIBRARY_PATH, PATH, ...):
# the image's value wins over nimbus's default, the function's own Environment over both.
IMAGE_OWNED = ("PATH", "LD_LIBRARY_PATH", "PYTHONPATH", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "LANG", "TZ",
               "NODE_PATH")
IMAGE_DEFAULTS = {"PATH": DEFAULT_PATH, "LAMBDA_TASK_ROOT": "/var/task", "LAMBDA_RUNTIME_DIR": "/var/runtime",
                  "LANG": "en_US.UTF-8", "TZ": ":UTC"}


def check_ready(spec: VersionSpec, isolated: bool) -> ImageRun:
    """The image of `spec`, unpacked and runnable here; else Lambda's error for a function not yet Active."""
    image = spec.image
    assert image is not None
    if not isolated:
        raise InvalidRuntime("Container-image functions need the namespaces isolation backend (bubblewrap); "
                             "this server runs the process backend.")
    if image.rootfs.is_dir():
        return image
    try:
        reason = str(json.loads(image.failed_marker.read_text()).get("reason", ""))
    except (OSError, ValueError):
        raise ResourceConflict("The operation cannot be performed at this time. The function is currently in the "
                               "following state: Pending") from None
    raise ResourceNotReady(f"The function is currently in the following state: Failed. {reason}".strip())


def image_environ(image: ImageRun, user: dict[str, str], lambda_env: dict[str, str]) -> dict[str, str]:
    """The runtime's environment: image ENV < Lambda's variables, with IMAGE_OWNED ones taken from the
    function's Environment, else the image, else IMAGE_DEFAULTS (never nimbus's host paths)."""
    env = {**image.environ, **lambda_env}
    for key in IMAGE_OWNED:
        value = user.get(key) or image.environ.get(key) or IMAGE_DEFAULTS.get(key)
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    env.pop("AWS_EXECUTION_ENV", None)  # not set for container images
    env.pop("_NIMBUS_OPT_DIR", None)
    return env
