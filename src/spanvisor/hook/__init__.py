"""The permission hook a coding-agent CLI runs before each tool call
(``spanvisor hook CLI``): the call read through its CLI's adapter, the
gate's answer (:mod:`spanvisor.gate`), a person asked when the policy says
so (:mod:`.ask`), the session's task and its records (:mod:`.task`), its
turn and session ends (:mod:`.end`), and the notices a CLI raises
(:mod:`.notice`). :mod:`.command` is what the CLI runs; :mod:`.system`
carries a call to a system gate (``spanvisor gate serve``) instead."""
