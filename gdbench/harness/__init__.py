"""The harness: how a backend is timed (rounds, clocks, the launcher that starts each job in
a fresh process), and what the machine is (its facts, its memory, its yardsticks)."""
