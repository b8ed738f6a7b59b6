"""Doing the work: reaching the product, one persona's day (tick), recording it, and a run of many."""
