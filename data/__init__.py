"""The input side shared by every backend: datasets, the batch plan and named workloads."""
