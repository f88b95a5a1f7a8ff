"""Holds only the script that ``streamlit run`` executes: Streamlit puts the script's folder first on
``sys.path``, so the script lives alone in this folder (next to the page modules it would shadow names)."""
