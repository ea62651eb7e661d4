"""The report's per-kind sections: each builds one scenario kind's charts and tables."""
