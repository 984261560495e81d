"""envcheck's knowledge: the facts with their sources (knowledge.yaml, read by facts.py) and the rules that draw
conclusions from them (rules.py), shared by lint, plan and diagnose."""

from envcheck.knowledge.facts import AndCudaPins, GpuCode, Knowledge, Message, TFBuild, Version

__all__ = ["AndCudaPins", "GpuCode", "Knowledge", "Message", "TFBuild", "Version"]
