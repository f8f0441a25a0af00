"""Locust load tests for the whole stack: user classes, load shapes, the CI gate."""
