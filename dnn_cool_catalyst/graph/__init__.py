"""The flow as a program: tracing, the graph, the condition algebra, batch keys and the ``nn.Module`` of the heads."""
