"""Helpers shared by the test modules: plain functions and classes, no fixtures, no tests.

Test modules import helpers from here only, never from another test module or a conftest.py;
conftest.py files hold the fixtures and build them from these helpers.
"""
