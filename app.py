"""capsim dashboard from a checkout: ``streamlit run app.py`` (``capsim dashboard`` runs the packaged script)."""

from capsim.ui.registry import main

main()
