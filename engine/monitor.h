#ifndef CT_MONITOR_H
#define CT_MONITOR_H
/* What ct.monitor.spawn (monitor_lua.c) and the monitor (monitor.c) share:
   the reserved argv[1], the configuration format and the protocol version.
   docs/architecture.md ("Monitor protocol") is the reference. */

/* `<exe> __ctcli-monitor__ <config fd> <id>`: main() hands this to
   ct_monitor_main before any Lua state exists. The id is only for ps. */
#define CT_MONITOR_ARG "__ctcli-monitor__"

/* The configuration: NUL-terminated "key=value" records read from the
   descriptor named in argv[2]; the first is "ctcli-monitor-config=<n>".
   Repeated keys (create, start, delete) append to an argv. */
#define CT_MONITOR_CONFIG_KEY "ctcli-monitor-config"
#define CT_MONITOR_CONFIG_VERSION 1
/* The descriptors the monitor inherits: its configuration, the logs and
   state directories, and the report pipe to ct.monitor.spawn. */
enum { CT_MONITOR_CFG_FD = 3, CT_MONITOR_LOGS_FD, CT_MONITOR_STATE_FD, CT_MONITOR_READY_FD };

/* The control protocol: the monitor greets with "ctcli-monitor <n>\n". */
#define CT_MONITOR_PROTOCOL 1
#define CT_MONITOR_SOCKET "monitor.sock"
#define CT_MONITOR_STATE "state.json"
#define CT_MONITOR_LOG "current.log"

/* Runs the monitor; never returns to a Lua state (argc/argv as main's). */
int ct_monitor_main(int argc, char **argv);

#endif
