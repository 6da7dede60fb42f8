"""Budgets summed across replicas: ``spend`` shares each process's model spend
through the state store and reads back the fleet's totals, so a budget level
is judged on what every replica spent. A task's own cost and budget levels are
read in :mod:`spanvisor.tracking`."""
