"""The clinician web UI (issue 8; docs/ui.md): server-rendered pages over the service path.

Every page reads and writes through ``Router.handle`` as the logged-in user's Actor, so the UI
gets exactly the API's validation, authorization and audit; it never touches the store.
"""
