"""capsim dashboard: wires the pages together (each page lives in capsim/ui/)."""

import streamlit as st

from capsim.ui.common import last_resort
from capsim.ui.registry import PAGES

st.set_page_config(page_title="capsim", layout="wide")
st.navigation([st.Page(last_resort(p.render), title=p.title, url_path=p.url_path) for p in PAGES]).run()
