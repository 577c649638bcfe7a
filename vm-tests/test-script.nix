# SPDX-License-Identifier: MIT
# The testScript the Nix runner hands the NixOS test driver: the globals the shared scripts
# expect (HOST_A, HOST_B, cable(i)), then the shared scripts in order, each run as its own
# compiled module in the driver's namespace so it may begin with a docstring or
# `from __future__` imports and its tracebacks name vm-tests/<name>.py. Several scripts run
# on the same VMs in sequence, as the local runner runs them (persistence.py, cable_pull.py
# and unpair.py continue from the pairing pair.py made).
# Builtins only, so tests/nix can render it and run it against stand-in machines.
{
  # Netdev ids of the cables on each node, in cable order (vm-tests/cables.nix).
  netdevs,
  # [ { name = "pair.py"; text = <its source>; } ... ], run in this order.
  scripts,
}:
let
  cableCount = builtins.length netdevs.a;
  runScript = script: ''
    exec(compile(${builtins.toJSON script.text}, "vm-tests/${script.name}", "exec"))
  '';
in
if builtins.length netdevs.b != cableCount then
  throw "vm-tests: a and b must have the same number of cables"
else
  ''
    # Globals the shared vm-tests scripts expect (vm-tests/test-script.nix).
    HOST_A = "a"
    HOST_B = "b"
    _CABLE_NETDEVS = {
        "a": ${builtins.toJSON netdevs.a},
        "b": ${builtins.toJSON netdevs.b},
    }


    class _Cable:
        """A cable between a and b; pulling it drops the link on both ends, as a real one."""

        def __init__(self, index: int) -> None:
            self.index = index

        def _set(self, state: str) -> None:
            for machine in (a, b):
                netdev = _CABLE_NETDEVS[machine.name][self.index]
                machine.send_monitor_command(f"set_link {netdev} {state}")

        def block(self) -> None:
            self._set("off")

        def unblock(self) -> None:
            self._set("on")


    def cable(index: int) -> _Cable:
        if not 0 <= index < ${toString cableCount}:
            raise IndexError(f"no cable {index}: this test has ${toString cableCount}")
        return _Cable(index)


    def _start_all_rebootable() -> None:
        """The driver's start_all, except that machine.reboot() restarts the VM instead of
        ending it (the driver starts QEMU with -no-reboot unless told otherwise)."""
        for machine in (a, b, controller):
            machine.start(allow_reboot=True)


    start_all = _start_all_rebootable


  ''
  + builtins.concatStringsSep "" (map runScript scripts)
