"""The simulated plate: a realistic CV7000 plate folder with ground truth (the demo and test fixture)."""

from lnpstore.simulate.simulator import SimulatedPlate, SimulationSettings, load_truth, simulate_plate

__all__ = ["SimulatedPlate", "SimulationSettings", "load_truth", "simulate_plate"]
