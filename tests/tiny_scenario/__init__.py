"""A tiny fourth scenario built through the scenario contract alone (tests/test_scenario_contract.py).

Two inputs, each 8 random numbers ("image" and "text" to the model); the label is whether the first
number of the two together is positive, so a model needs both inputs to be sure.
"""
