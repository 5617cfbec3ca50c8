"""Running the evaluation's programs and reading what they print: a job list with a progress bar
on stderr, per-process wall time and peak RSS (os.wait4, so each child's own figures), the
metrics of one schedule from `dip-plan --json`, and Markdown/CSV writers. No plotting here."""
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time


class JobFailed(RuntimeError):
    pass


class Outcome:
    """What one finished process left: exit status, output, wall seconds, peak RSS (MiB)."""

    def __init__(self, argv, returncode, stdout, stderr, wall_s, maxrss_mib, cpu_s):
        self.argv, self.returncode, self.stdout, self.stderr = argv, returncode, stdout, stderr
        self.wall_s, self.maxrss_mib, self.cpu_s = wall_s, maxrss_mib, cpu_s

    def json(self):
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError as e:
            raise JobFailed(f"{' '.join(self.argv)}: output is not JSON ({e}); stderr: {self.stderr[-500:]}")


# GNU time, when installed, measures a child forked from its own small process. A child forked
# from this Python process inherits Python's peak RSS (about 18 MiB) as the floor of its own
# ru_maxrss, which hides a small planner's footprint.
GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def run_process(argv, timeout_s=None):
    """Runs argv to completion. Peak RSS and CPU time come from GNU time where installed, else
    from wait4 on this child alone (getrusage's RUSAGE_CHILDREN would give the maximum over every
    child so far; wait4's is floored by this process's RSS, see GNU_TIME)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r", suffix=".time") as usage_file:
        start = time.perf_counter()
        wrapped = [GNU_TIME, "-o", usage_file.name, "-f", "%M %U %S", "--"] + list(argv) if GNU_TIME else argv
        proc = subprocess.Popen(wrapped, stdout=out, stderr=err)
        deadline = None if timeout_s is None else start + timeout_s
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG if deadline else 0)
            if pid != 0:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; Popen must not wait again
        out.seek(0)
        err.seek(0)
        maxrss_mib, cpu_s = usage.ru_maxrss / 1024.0, usage.ru_utime + usage.ru_stime
        if GNU_TIME:
            fields = (usage_file.read().strip().splitlines() or [""])[-1].split()
            if len(fields) == 3:  # "Command exited with non-zero status N" comes on a line before
                maxrss_mib, cpu_s = float(fields[0]) / 1024.0, float(fields[1]) + float(fields[2])
        return Outcome(argv, proc.returncode, out.read().decode(errors="replace"),
                       err.read().decode(errors="replace"), wall, maxrss_mib, cpu_s)


class Progress:
    """A one-line progress bar on stderr: done/total, elapsed, a naive ETA, the current job."""

    def __init__(self, total, stream=sys.stderr, width=28):
        self.total, self.done, self.stream, self.width = max(total, 1), 0, stream, width
        self.start = time.perf_counter()
        self.tty = stream.isatty()

    def show(self, label):
        elapsed = time.perf_counter() - self.start
        filled = int(self.width * self.done / self.total)
        eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        eta_text = "--" if math.isnan(eta) else f"{eta:4.0f}s"
        line = (f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} "
                f"{elapsed:5.0f}s elapsed, eta {eta_text}  {label}")
        if self.tty:
            self.stream.write("\r" + line[:150].ljust(150))
        else:  # a log file gets one line per job rather than carriage returns
            self.stream.write(line + "\n")
        self.stream.flush()

    def step(self):
        self.done += 1

    def finish(self):
        elapsed = time.perf_counter() - self.start
        self.stream.write(("\r" if self.tty else "") + f"done: {self.done} jobs in {elapsed:.0f}s".ljust(150 if self.tty else 0) + "\n")
        self.stream.flush()


class Jobs:
    """Runs the jobs of every section in order under one progress bar."""

    def __init__(self, total):
        self.progress = Progress(total)
        self.log = []  # every command with its section, wall time, peak RSS and exit status
        self.section = ""

    def run(self, label, argv, accept=(0,), timeout_s=None):
        self.progress.show(label)
        outcome = run_process(argv, timeout_s)
        self.progress.step()
        self.log.append({"section": self.section, "label": label, "argv": argv, "wall_s": round(outcome.wall_s, 2),
                         "maxrss_mib": round(outcome.maxrss_mib, 1), "returncode": outcome.returncode})
        if outcome.returncode not in accept:
            raise JobFailed(f"{label}: {' '.join(argv)} exited with {outcome.returncode}: {outcome.stderr[-800:]}")
        return outcome


# --- dip-plan --json ------------------------------------------------------------------------------

def schedule_metrics(doc, schedule):
    """One schedule's figures over the iterations it ran in: mean iteration ms, samples/s,
    tokens/s (text + image + latent tokens), modelled MFU, mean bubble ratio, mean gap to its own
    lower bound, peak memory (GiB), mean planning ms; or {"error": ...}."""
    its = [it for it in doc["iterations"] if "makespan_ms" in it["schedules"].get(schedule, {})]
    if not its:
        return {"error": doc["summary"].get(schedule, {}).get("error", "did not run")}
    per = [it["schedules"][schedule] for it in its]
    seconds = sum(p["makespan_ms"] for p in per) / 1000.0
    samples = sum(mb["samples"] for it in its for mb in it["microbatches"])
    tokens = sum(mb["text_tokens"] + mb["image_tokens"] + mb.get("latent_tokens", 0)
                 for it in its for mb in it["microbatches"])
    flops = sum(it.get("model_flops", 0.0) for it in its)
    peak_rate = doc.get("peak_flops_per_gpu", 0.0) * doc.get("gpus", 0)
    return {
        "iterations": len(its),
        "mean_iteration_ms": 1000.0 * seconds / len(its),
        "samples_per_s": samples / seconds,
        "tokens_per_s": tokens / seconds,
        "mfu": flops / (seconds * peak_rate) if peak_rate > 0 else None,
        "bubble_ratio": sum(p["bubble_ratio"] for p in per) / len(per),
        "lower_bound_gap": sum(p["makespan_ms"] / p["lower_bound_ms"] - 1.0 for p in per) / len(per),
        # The tighter bounds (dip/sim/lower_bounds.hpp): with each rank's window, and under the cap.
        "tight_bound_gap": gap_to(per, "memory_free_bound_ms"),
        "cap_bound_gap": gap_to(per, "cap_bound_ms"),
        "peak_memory_gib": max(p["peak_memory_bytes"] for p in per) / 2**30,
        "plan_ms": sum(p["plan_ms"] for p in per) / len(per),
    }


def gap_to(per, bound):
    """Mean makespan / bound - 1 over the iterations; None where dip-plan did not report `bound`."""
    if not all(p.get(bound) for p in per):
        return None
    return sum(p["makespan_ms"] / p[bound] - 1.0 for p in per) / len(per)


def iteration_ms(doc, schedule):
    """Per iteration: the schedule's makespan in ms, None where it failed."""
    return [it["schedules"].get(schedule, {}).get("makespan_ms") for it in doc["iterations"]]


# --- output ---------------------------------------------------------------------------------------

def geomean(values):
    values = [v for v in values if v]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def fmt(value, spec="{:.0f}", missing="fail"):
    return missing if value is None else spec.format(value)


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(path, rows, columns):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({k: ("" if row.get(k) is None else round(row[k], 6) if isinstance(row.get(k), float) else row[k])
                        for k in columns})


def write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, indent=1)
        f.write("\n")


def loglog_slope(xs, ys):
    """Least-squares slope of log y against log x: the exponent k of y ~ x^k."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx > 0 else None
