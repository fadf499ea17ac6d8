"""The phases of the load run on the generator: the /login/ baseline at rising rates,
the users' arrivals (log in, dashboard, a VM list and its websockets), the steps of
offered rates over the users' next actions, and drive(), which runs them with the event
sources, the sweeper and the connection counter alongside."""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import subprocess
import time
from collections.abc import Callable

import benchkit as kit

from .client import Http
from .generator import Generator
from .limits import EVENT_TIMEOUT_S, PAGE_P95_S, PASSWORD
from .steps import Step, ms
from .summary import print_step, summarise
from .usage import Cpu, Logs
from .users import Action, VirtualUser
from .world import World

WS_PATH = re.compile(rb'data-[a-z-]+-ws="(/ws/[^"]+)"')


class Run(Generator):
    """The load run: the phases, on the generator's machinery."""

    async def baseline(self, report: kit.Report) -> float:
        kit.phase("[1] baseline: anonymous GET /login/ offered open-loop at rising rates")
        http = Http(self.port, keep=False)  # one pool of keep-alive connections, no cookies
        ceiling, at_ceiling = 0.0, math.nan
        for rate in self.args.login_rates:
            step = Step(f"/login/ {rate:.0f}/s", rate, self.args.login_seconds)
            await self.offer(step, lambda: (http, Action("login page", "page", "GET", "/login/")))
            await self.drain(step, 10)
            achieved = step.answered / step.seconds
            p95 = step.p("page", 95)
            kit.say(
                f"  offered {rate:5.0f}/s  answered {achieved:6.1f}/s  p50 {ms(step.p('page', 50)):>7}  "
                f"p95 {ms(p95):>7}  errors {step.error_count}  "
                f"(generator {step.cpu['load generator'] * 100:.0f}% of a core, web "
                f"{step.cpu['web'] * 100:.0f}%)"
            )
            if p95 < PAGE_P95_S and step.error_count == 0 and achieved >= 0.95 * rate:
                ceiling, at_ceiling = rate, p95
            else:
                break
        http.close()
        self.clock.steps.clear()
        report.add(
            "baseline: GET /login/ ceiling (anonymous, open loop)",
            f"{ceiling:.0f} req/s (p95 {ms(at_ceiling)})",
        )
        return ceiling

    async def arrive(self, user: VirtualUser, step: Step) -> None:
        """Log in through the form, land on the dashboard, open a VM list and its websockets."""
        http = user.http
        due = time.monotonic()
        got = await self.send(step, due, http, Action("login page", "page", "GET", "/login/"))
        if not got or "csrftoken" not in http.cookies:
            step.errors["login page gave no CSRF cookie"] += 1
            return
        form = {
            "username": user.spec.username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": http.cookies["csrftoken"],
        }
        started = time.monotonic()
        try:
            status, _h, _b = await http.request("POST", "/login/", form=form)
        except Exception as exc:  # noqa: BLE001
            step.errors[f"{type(exc).__name__} POST /login/"] += 1
            return
        if status != 302 or "sessionid" not in http.cookies:
            step.errors[f"login answered {status} without a session"] += 1
            return
        step.lat["login"].append(time.monotonic() - started)
        await self.send(step, time.monotonic(), http, Action("page dashboard", "page", "GET", "/"))
        got = await self.send(
            step,
            time.monotonic(),
            http,
            Action("page vm list", "page", "GET", user.vm_list_path(), after=user.saw_page),
        )
        if not got or got[0] != 200:
            return
        paths = list(dict.fromkeys(p.decode() for p in WS_PATH.findall(got[1])))
        if self.args.sockets == "one":
            paths = paths[:1]
        elif self.args.sockets == "none":
            paths = []
        await asyncio.gather(*(self.open_socket(user, p, step) for p in paths))
        self.ready.append(user)

    async def arrivals(self, report: kit.Report) -> None:
        n = len(self.users)
        kit.phase(
            f"[2] arrivals: {n} users arrive (Poisson, {self.args.arrival_rate:g}/s), log in, "
            f"open a VM list and keep its websockets open; events at {self.args.events:g}/s"
        )
        step = Step("arrivals", self.args.arrival_rate, 0)
        self.clock.steps.append(step)
        step.t0 = time.monotonic()
        step.t1 = math.inf
        self.mark(step)
        order = list(self.users)
        self.rng.shuffle(order)
        due = step.t0
        pending = []
        for user in order:
            due += self.rng.expovariate(self.args.arrival_rate)
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            pending.append(asyncio.create_task(self.arrive(user, step)))
        # Bounded: users still logging in after this go on, counted in the first step.
        await asyncio.wait(pending, timeout=45)
        self.tasks.update(t for t in pending if not t.done())
        step.t1 = time.monotonic()
        step.seconds = step.t1 - step.t0
        self.settle(step)
        socks = sum(len(u.socks) for u in self.users)
        hosts_per_user = socks / max(1, len(self.ready))
        kit.say(
            f"  {len(self.ready)} of {n} users in after {step.seconds:.0f} s; {socks} websockets "
            f"open ({hosts_per_user:.1f} per user); login POST p50 {ms(kit.percentile(step.lat['login'], 50))} "
            f"p95 {ms(kit.percentile(step.lat['login'], 95))}; pages p95 {ms(step.p('page', 95))}; "
            f"websocket open p95 {ms(step.p('websocket', 95))}; errors {step.error_count}"
        )
        report.add(
            f"arrivals: {len(self.ready)}/{n} users in, login POST p95",
            f"{ms(kit.percentile(step.lat['login'], 95))}; {socks} websockets; "
            f"{step.error_count} errors",
        )
        if step.errors:
            kit.say("  errors: " + ", ".join(f"{k} x{v}" for k, v in step.errors.most_common(6)))

    def pick(self) -> tuple[Http, Action]:
        user = self.rng.choice(self.ready)
        return user.http, user.next_action()

    async def steps(self, report: kit.Report) -> list[Step]:
        kit.phase(
            f"[3] steps: offered rates {', '.join(f'{r:g}' for r in self.args.rates)} req/s, "
            f"{self.args.step_seconds:g} s each"
        )
        done: list[Step] = []
        for rate in self.args.rates:
            step = Step(f"{rate:g} req/s", rate, self.args.step_seconds)
            await self.offer(step, self.pick)
            done.append(step)
            print_step(step, self.args.events)
            overloaded = step.answered < 0.7 * step.scheduled or step.error_count > 0.05 * max(
                1, step.scheduled
            )
            if overloaded and not self.args.all_steps and rate != self.args.rates[-1]:
                step.stopped_early = "overloaded: the steps above it were not run"
                kit.say(f"  {step.stopped_early} (--all-steps runs them)")
                break
        await self.drain(done[-1], 15)
        await asyncio.sleep(1.0)
        self.events.sweep(time.monotonic() + EVENT_TIMEOUT_S + 1, final=True)
        summarise(done, self.events, self.world.reused, report)
        return done


async def drive(
    args: argparse.Namespace,
    world: World,
    port: int,
    cpu: Cpu,
    logs: Logs,
    start_sources: Callable[[], list[subprocess.Popen]],
    database: tuple[str, str],
    report: kit.Report,
) -> Run:
    run = Run(args, world, port, cpu, logs)
    await run.baseline(report)
    loop = asyncio.get_running_loop()
    readers = []
    sources = start_sources() if args.events > 0 else []
    if sources:
        cpu.add("event source", [s.pid for s in sources])
    for source in sources:
        stream = asyncio.StreamReader(limit=1 << 20)
        await loop.connect_read_pipe(
            lambda s=stream: asyncio.StreamReaderProtocol(s), source.stdout
        )
        readers.append(asyncio.create_task(run.read_source(stream)))
    sweeper_task = asyncio.create_task(run.sweeper())
    counter_task = asyncio.create_task(run.count_connections(*database))
    try:
        cpu.since_last()
        await run.arrivals(report)
        if not run.ready:
            raise RuntimeError("no user could log in; see the errors above")
        await run.steps(report)
    finally:
        for source in sources:
            if source.poll() is None:
                source.terminate()
        for task in (*readers, sweeper_task, counter_task):
            task.cancel()
        await run.close()
    return run
