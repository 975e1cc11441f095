"""What a command job inherits from the service's environment.

The service's environment holds its own secrets (store passwords, cloud and
API keys), so a command job does not get it whole. It gets a minimal set that
programs need to start and find their GPU (`MINIMAL`), the variables its
submitter set, the GPU visibility the runner sets, and the service variables
an operator chose to pass on (`JobSettings.pass_env`, `slotdeck serve
--job-env-pass`, `'*'` for all of them).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase

MINIMAL = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "TMPDIR",
    "TERM",
    "LD_LIBRARY_PATH",
    "CUDA_*",
    "NVIDIA_*",
)


def parse_pass_env(text: str) -> tuple[str, ...]:
    """`"HF_HOME, WANDB_*"` -> `("HF_HOME", "WANDB_*")`; blanks are dropped."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def passes(name: str, globs: Iterable[str]) -> bool:
    return any(fnmatchcase(name, glob) for glob in globs)


def job_environment(
    prepared: Mapping[str, str],
    job_env: Mapping[str, str],
    pass_env: Iterable[str] = (),
    service_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """`prepared` (the service's environment with the job's and the runner's variables laid over it) without
    the service variables the job may not inherit: those neither in MINIMAL nor in `pass_env`, left as the
    service has them and not asked for by the job."""
    service_env = os.environ if service_env is None else service_env
    allowed = (*MINIMAL, *pass_env)
    return {
        name: value
        for name, value in prepared.items()
        if name in job_env or service_env.get(name) != value or passes(name, allowed)
    }
