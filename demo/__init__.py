"""The demo: a collector, a stand-in vLLM server, an agent, and a configuration change to catch."""
