"""Synthetic identity conversations: diversity sampling, prompts, bulk generation (resumable), export.
Notebooks 01 and 02.
"""
