"""The worker agent: what this node does with its worker keys, and the machine it does it on.

The planner (``planner``, sans-IO) decides from committed state what each local worker key does next; the shell
(``shell``, trio) carries those actions out through the node and the compute pool. Beside them: the honest claims
a key commits when it cannot produce a result (``claims``), the trio side of the compute pool (``pool``),
detection and measurement of this machine's device (``device``), and the test-only fault switches (``faults``).
"""

from bootstrap.agent.claims import NODE_CODES
from bootstrap.agent.device import LocalDevice, measure_device, probe_device, torch_installed
from bootstrap.agent.faults import FAULT_MODES, Faults, FaultSpecError, parse_faults, perturb_summary
from bootstrap.agent.planner import AgentError, AgentMemory, LocalKey, Planner, RunRecord
from bootstrap.agent.pool import TrioComputePool, open_compute_pool
from bootstrap.agent.shell import WorkerAgent

__all__ = [
    "FAULT_MODES", "NODE_CODES", "AgentError", "AgentMemory", "FaultSpecError", "Faults", "LocalDevice", "LocalKey",
    "Planner", "RunRecord", "TrioComputePool", "WorkerAgent", "measure_device", "open_compute_pool", "parse_faults",
    "perturb_summary", "probe_device", "torch_installed"
]
