"""The script ``capsim dashboard`` hands to ``streamlit run`` (Streamlit reruns it on every interaction)."""

from capsim.ui.registry import main

main()
