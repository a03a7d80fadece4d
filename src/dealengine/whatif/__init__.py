"""What-if projections: the recorded events re-projected under other rules, side by side with
what really happened (`dealengine whatif`, `Engine.what_if`). Scenarios: projections/scenarios/."""

from dealengine.whatif.result import Diff, ScenarioResult, Views, WhatIf
from dealengine.whatif.scenario import Scenario, load_scenario

__all__ = ["Diff", "Scenario", "ScenarioResult", "Views", "WhatIf", "load_scenario"]
