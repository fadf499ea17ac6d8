"""The parts of benchmarks/load.py, the load run: its goals and settings (limits), the
world of hosts, VMs, projects and users (world), the event source helper process
(source), one browser's HTTP (client), the virtual users (users), what is measured per
step (steps), event delivery (events), CPU and log watching (usage), the in-process CPU
baseline (cpu_baseline), the load generator (generator) and the phases it runs
(phases), the figures (summary), and the production processes under load (stack).
load.py puts benchmarks/ on sys.path before importing it, as it does for common.py."""
