"""Figures for notebooks and reports: matplotlib for static reports, plotly for interactive views."""
