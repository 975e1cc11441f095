"""Why a queued job has not started yet, worked out from the latest snapshot (no server call)."""

from __future__ import annotations

from embedded_service.model import Job, JobState, Snapshot


def queued_reason(job: Job, snap: Snapshot | None) -> str:
    """One line for a queued job: its queue paused, its place in line, the queue full, or GPU memory short.

    "" for a job that is not queued. The snapshot's waiter for the job gives its
    position (0 = next); a job not yet in line (claimed by no runner) says so.
    """
    if job.state != JobState.queued:
        return ""
    if snap is None:
        return "no figures from the server yet"
    reasons: list[str] = []
    stats = next((q for q in snap.queues if q.config.name == job.queue), None)
    if stats is None:
        return f"queue {job.queue} does not exist (yet)"
    if stats.config.paused:
        reasons.append(f"queue {job.queue} is paused")
    waiter = next((w for w in snap.waiters if w.job_id == job.id), None)
    if waiter is not None:
        ahead = waiter.position
        reasons.append("next in line" if ahead == 0 else f"{ahead} ahead of it in line")
    elif job.not_before is not None and job.not_before > snap.at:
        reasons.append(f"retry backoff: not before {job.not_before - snap.at:.0f} s from now")
    else:
        reasons.append("not yet in line for a slot")
    if stats.config.limit == 0:
        reasons.append("the queue's limit is 0")
    elif stats.in_use >= stats.config.limit:
        reasons.append(f"all {stats.config.limit} slots in use")
    if job.gpus or job.gpu_mem_mib:
        free = [
            (d.memory_total_mib or 0) - max(d.memory_used_mib or 0, d.memory_reserved_mib)
            for d in snap.devices
            if d.memory_total_mib
        ]
        if job.gpus > len(snap.devices):
            reasons.append(f"needs {job.gpus} GPUs, the server has {len(snap.devices)}")
        elif job.gpu_mem_mib and free and sum(1 for f in free if f >= job.gpu_mem_mib) < max(1, job.gpus):
            reasons.append(f"needs {job.gpu_mem_mib:,} MiB GPU memory; the most free on one GPU is {max(free):,} MiB")
    return "; ".join(reasons)
