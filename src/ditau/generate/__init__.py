"""Event generation: Pythia 8 pp -> Z/gamma* -> tau+ tau- with full truth (``ditau generate``)."""

from ditau.generate.config import PROCESSES, ConfigError, GenerateConfig
from ditau.generate.runner import GenerationError, RunSummary, plan_jobs, run, run_job

__all__ = ["PROCESSES", "ConfigError", "GenerateConfig", "GenerationError", "RunSummary",
           "plan_jobs", "run", "run_job"]
