# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_payrecon_global_optspecs
    string join \n config= log-format= h/help V/version
end

function __fish_payrecon_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_payrecon_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_payrecon_using_subcommand
    set -l cmd (__fish_payrecon_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c payrecon -n "__fish_payrecon_needs_command" -l config -d 'Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]' -r -F
complete -c payrecon -n "__fish_payrecon_needs_command" -l log-format -d 'Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)' -r -f -a "text\t''
json\t''"
complete -c payrecon -n "__fish_payrecon_needs_command" -s h -l help -d 'Print help'
complete -c payrecon -n "__fish_payrecon_needs_command" -s V -l version -d 'Print version'
complete -c payrecon -n "__fish_payrecon_needs_command" -f -a "run" -d 'Daemon: reconcile on the cron schedule until SIGTERM/SIGINT'
complete -c payrecon -n "__fish_payrecon_needs_command" -f -a "once" -d 'One pass over the sessions due now, then exit'
complete -c payrecon -n "__fish_payrecon_needs_command" -f -a "add" -d 'Enqueue one session'
complete -c payrecon -n "__fish_payrecon_needs_command" -f -a "import" -d 'Bulk enqueue from CSV (header: provider,session_id,reference,amount,currency,created_at,provider_ref)'
complete -c payrecon -n "__fish_payrecon_needs_command" -f -a "list" -d 'List sessions, newest first'
complete -c payrecon -n "__fish_payrecon_needs_command" -f -a "show" -d 'One session with its transitions and events'
complete -c payrecon -n "__fish_payrecon_needs_command" -f -a "stats" -d 'Sessions by provider × status, COMPLETED totals per currency, events waiting and dead'
complete -c payrecon -n "__fish_payrecon_needs_command" -f -a "verify" -d 'Check one session with its provider now, record any transition, print the recorded state'
complete -c payrecon -n "__fish_payrecon_needs_command" -f -a "resolve" -d 'A person\'s decision on a PENDING or REVIEW session (source `manual`)'
complete -c payrecon -n "__fish_payrecon_needs_command" -f -a "audit" -d 'The audit log: people\'s decisions and actions, newest first'
complete -c payrecon -n "__fish_payrecon_needs_command" -f -a "export" -d 'One row per session for accounting'
complete -c payrecon -n "__fish_payrecon_needs_command" -f -a "events" -d 'The events outbox'
complete -c payrecon -n "__fish_payrecon_needs_command" -f -a "unmatched" -d 'Payments a provider lists as paid that no session holds (open ones unless --all)'
complete -c payrecon -n "__fish_payrecon_needs_command" -f -a "ledger" -d 'The ledger itself'
complete -c payrecon -n "__fish_payrecon_needs_command" -f -a "check-config" -d 'Validate the config and report problems; exit 2 on any'
complete -c payrecon -n "__fish_payrecon_needs_command" -f -a "simulate" -d 'Run the provider simulator'
complete -c payrecon -n "__fish_payrecon_needs_command" -f -a "demo" -d 'The embedded demo: simulator + temporary ledger + sample sessions, reconciled to the end'
complete -c payrecon -n "__fish_payrecon_needs_command" -f -a "completions" -d 'Print shell completions'
complete -c payrecon -n "__fish_payrecon_needs_command" -f -a "man" -d 'Print the man page (roff)'
complete -c payrecon -n "__fish_payrecon_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c payrecon -n "__fish_payrecon_using_subcommand run" -l config -d 'Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand run" -l log-format -d 'Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)' -r -f -a "text\t''
json\t''"
complete -c payrecon -n "__fish_payrecon_using_subcommand run" -s h -l help -d 'Print help'
complete -c payrecon -n "__fish_payrecon_using_subcommand once" -l config -d 'Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand once" -l log-format -d 'Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)' -r -f -a "text\t''
json\t''"
complete -c payrecon -n "__fish_payrecon_using_subcommand once" -l all -d 'Every PENDING session, ignoring its schedule (transitions get source `backfill`)'
complete -c payrecon -n "__fish_payrecon_using_subcommand once" -s h -l help -d 'Print help'
complete -c payrecon -n "__fish_payrecon_using_subcommand add" -l provider -r
complete -c payrecon -n "__fish_payrecon_using_subcommand add" -l session-id -r
complete -c payrecon -n "__fish_payrecon_using_subcommand add" -l reference -r
complete -c payrecon -n "__fish_payrecon_using_subcommand add" -l amount -d 'Decimal in major units, such as 100.00' -r
complete -c payrecon -n "__fish_payrecon_using_subcommand add" -l currency -r
complete -c payrecon -n "__fish_payrecon_using_subcommand add" -l created-at -d 'RFC 3339; defaults to now' -r
complete -c payrecon -n "__fish_payrecon_using_subcommand add" -l provider-ref -d 'The provider\'s second id for the payment (Moflay: the `trxn_…` transaction id)' -r
complete -c payrecon -n "__fish_payrecon_using_subcommand add" -l config -d 'Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand add" -l log-format -d 'Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)' -r -f -a "text\t''
json\t''"
complete -c payrecon -n "__fish_payrecon_using_subcommand add" -s h -l help -d 'Print help'
complete -c payrecon -n "__fish_payrecon_using_subcommand import" -l config -d 'Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand import" -l log-format -d 'Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)' -r -f -a "text\t''
json\t''"
complete -c payrecon -n "__fish_payrecon_using_subcommand import" -s h -l help -d 'Print help'
complete -c payrecon -n "__fish_payrecon_using_subcommand list" -l status -r
complete -c payrecon -n "__fish_payrecon_using_subcommand list" -l provider -r
complete -c payrecon -n "__fish_payrecon_using_subcommand list" -l limit -r
complete -c payrecon -n "__fish_payrecon_using_subcommand list" -l config -d 'Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand list" -l log-format -d 'Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)' -r -f -a "text\t''
json\t''"
complete -c payrecon -n "__fish_payrecon_using_subcommand list" -s h -l help -d 'Print help'
complete -c payrecon -n "__fish_payrecon_using_subcommand show" -l provider -d 'Needed when two providers have the same session id' -r
complete -c payrecon -n "__fish_payrecon_using_subcommand show" -l config -d 'Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand show" -l log-format -d 'Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)' -r -f -a "text\t''
json\t''"
complete -c payrecon -n "__fish_payrecon_using_subcommand show" -s h -l help -d 'Print help'
complete -c payrecon -n "__fish_payrecon_using_subcommand stats" -l config -d 'Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand stats" -l log-format -d 'Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)' -r -f -a "text\t''
json\t''"
complete -c payrecon -n "__fish_payrecon_using_subcommand stats" -s h -l help -d 'Print help'
complete -c payrecon -n "__fish_payrecon_using_subcommand verify" -l provider -d 'Needed when two providers have the same session id' -r
complete -c payrecon -n "__fish_payrecon_using_subcommand verify" -l config -d 'Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand verify" -l log-format -d 'Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)' -r -f -a "text\t''
json\t''"
complete -c payrecon -n "__fish_payrecon_using_subcommand verify" -s h -l help -d 'Print help'
complete -c payrecon -n "__fish_payrecon_using_subcommand resolve" -l to -d 'COMPLETED, FAILED, CANCELLED or EXPIRED' -r
complete -c payrecon -n "__fish_payrecon_using_subcommand resolve" -l reason -d 'Why; recorded on the transition and in the event' -r
complete -c payrecon -n "__fish_payrecon_using_subcommand resolve" -l by -d 'Who decides; recorded on the transition, in the event and the audit log [default: the Unix user running the command]' -r
complete -c payrecon -n "__fish_payrecon_using_subcommand resolve" -l provider -d 'Needed when two providers have the same session id' -r
complete -c payrecon -n "__fish_payrecon_using_subcommand resolve" -l config -d 'Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand resolve" -l log-format -d 'Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)' -r -f -a "text\t''
json\t''"
complete -c payrecon -n "__fish_payrecon_using_subcommand resolve" -s h -l help -d 'Print help'
complete -c payrecon -n "__fish_payrecon_using_subcommand audit" -l limit -r
complete -c payrecon -n "__fish_payrecon_using_subcommand audit" -l config -d 'Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand audit" -l log-format -d 'Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)' -r -f -a "text\t''
json\t''"
complete -c payrecon -n "__fish_payrecon_using_subcommand audit" -s h -l help -d 'Print help'
complete -c payrecon -n "__fish_payrecon_using_subcommand export" -l format -r -f -a "csv\t''
jsonl\t''"
complete -c payrecon -n "__fish_payrecon_using_subcommand export" -l since -d 'Only sessions resolved at or after this time (RFC 3339)' -r
complete -c payrecon -n "__fish_payrecon_using_subcommand export" -l until -d 'Only sessions resolved before this time (RFC 3339)' -r
complete -c payrecon -n "__fish_payrecon_using_subcommand export" -l status -d 'Only these statuses (repeatable)' -r
complete -c payrecon -n "__fish_payrecon_using_subcommand export" -l provider -r
complete -c payrecon -n "__fish_payrecon_using_subcommand export" -l output -d 'Write here (atomically) instead of stdout' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand export" -l config -d 'Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand export" -l log-format -d 'Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)' -r -f -a "text\t''
json\t''"
complete -c payrecon -n "__fish_payrecon_using_subcommand export" -l skip-unreadable -d 'Leave out rows payrecon cannot read (each is logged) instead of refusing to export'
complete -c payrecon -n "__fish_payrecon_using_subcommand export" -s h -l help -d 'Print help'
complete -c payrecon -n "__fish_payrecon_using_subcommand events; and not __fish_seen_subcommand_from list replay help" -l config -d 'Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand events; and not __fish_seen_subcommand_from list replay help" -l log-format -d 'Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)' -r -f -a "text\t''
json\t''"
complete -c payrecon -n "__fish_payrecon_using_subcommand events; and not __fish_seen_subcommand_from list replay help" -s h -l help -d 'Print help'
complete -c payrecon -n "__fish_payrecon_using_subcommand events; and not __fish_seen_subcommand_from list replay help" -f -a "list" -d 'Events, newest first'
complete -c payrecon -n "__fish_payrecon_using_subcommand events; and not __fish_seen_subcommand_from list replay help" -f -a "replay" -d 'Put events back in line with a fresh schedule'
complete -c payrecon -n "__fish_payrecon_using_subcommand events; and not __fish_seen_subcommand_from list replay help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c payrecon -n "__fish_payrecon_using_subcommand events; and __fish_seen_subcommand_from list" -l limit -r
complete -c payrecon -n "__fish_payrecon_using_subcommand events; and __fish_seen_subcommand_from list" -l config -d 'Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand events; and __fish_seen_subcommand_from list" -l log-format -d 'Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)' -r -f -a "text\t''
json\t''"
complete -c payrecon -n "__fish_payrecon_using_subcommand events; and __fish_seen_subcommand_from list" -l dead -d 'Only dead events'
complete -c payrecon -n "__fish_payrecon_using_subcommand events; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c payrecon -n "__fish_payrecon_using_subcommand events; and __fish_seen_subcommand_from replay" -l id -d 'One event (dead, delivered or waiting)' -r
complete -c payrecon -n "__fish_payrecon_using_subcommand events; and __fish_seen_subcommand_from replay" -l by -d 'Who asks; recorded in the audit log [default: the Unix user running the command]' -r
complete -c payrecon -n "__fish_payrecon_using_subcommand events; and __fish_seen_subcommand_from replay" -l config -d 'Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand events; and __fish_seen_subcommand_from replay" -l log-format -d 'Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)' -r -f -a "text\t''
json\t''"
complete -c payrecon -n "__fish_payrecon_using_subcommand events; and __fish_seen_subcommand_from replay" -l dead -d 'Every dead event'
complete -c payrecon -n "__fish_payrecon_using_subcommand events; and __fish_seen_subcommand_from replay" -s h -l help -d 'Print help'
complete -c payrecon -n "__fish_payrecon_using_subcommand events; and __fish_seen_subcommand_from help" -f -a "list" -d 'Events, newest first'
complete -c payrecon -n "__fish_payrecon_using_subcommand events; and __fish_seen_subcommand_from help" -f -a "replay" -d 'Put events back in line with a fresh schedule'
complete -c payrecon -n "__fish_payrecon_using_subcommand events; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c payrecon -n "__fish_payrecon_using_subcommand unmatched; and not __fish_seen_subcommand_from dismiss match help" -l limit -r
complete -c payrecon -n "__fish_payrecon_using_subcommand unmatched; and not __fish_seen_subcommand_from dismiss match help" -l config -d 'Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand unmatched; and not __fish_seen_subcommand_from dismiss match help" -l log-format -d 'Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)' -r -f -a "text\t''
json\t''"
complete -c payrecon -n "__fish_payrecon_using_subcommand unmatched; and not __fish_seen_subcommand_from dismiss match help" -l all -d 'Matched and dismissed ones too, and those still within their grace window'
complete -c payrecon -n "__fish_payrecon_using_subcommand unmatched; and not __fish_seen_subcommand_from dismiss match help" -s h -l help -d 'Print help'
complete -c payrecon -n "__fish_payrecon_using_subcommand unmatched; and not __fish_seen_subcommand_from dismiss match help" -f -a "dismiss" -d 'Close an open one: a person\'s decision, recorded with their name, the reason and the time'
complete -c payrecon -n "__fish_payrecon_using_subcommand unmatched; and not __fish_seen_subcommand_from dismiss match help" -f -a "match" -d 'Tie an open one to the PENDING or REVIEW session it belongs to (its id becomes the session\'s provider_ref; the provider\'s answer still decides the session)'
complete -c payrecon -n "__fish_payrecon_using_subcommand unmatched; and not __fish_seen_subcommand_from dismiss match help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c payrecon -n "__fish_payrecon_using_subcommand unmatched; and __fish_seen_subcommand_from dismiss" -l by -d 'Who decides [default: the Unix user running the command]' -r
complete -c payrecon -n "__fish_payrecon_using_subcommand unmatched; and __fish_seen_subcommand_from dismiss" -l reason -d 'Why (a refund made by hand, a test payment, …)' -r
complete -c payrecon -n "__fish_payrecon_using_subcommand unmatched; and __fish_seen_subcommand_from dismiss" -l config -d 'Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand unmatched; and __fish_seen_subcommand_from dismiss" -l log-format -d 'Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)' -r -f -a "text\t''
json\t''"
complete -c payrecon -n "__fish_payrecon_using_subcommand unmatched; and __fish_seen_subcommand_from dismiss" -s h -l help -d 'Print help'
complete -c payrecon -n "__fish_payrecon_using_subcommand unmatched; and __fish_seen_subcommand_from match" -l session -d 'The session id, at the payment\'s provider' -r
complete -c payrecon -n "__fish_payrecon_using_subcommand unmatched; and __fish_seen_subcommand_from match" -l by -d 'Who decides [default: the Unix user running the command]' -r
complete -c payrecon -n "__fish_payrecon_using_subcommand unmatched; and __fish_seen_subcommand_from match" -l reason -d 'Why (the order it paid for, how it was found, …)' -r
complete -c payrecon -n "__fish_payrecon_using_subcommand unmatched; and __fish_seen_subcommand_from match" -l config -d 'Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand unmatched; and __fish_seen_subcommand_from match" -l log-format -d 'Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)' -r -f -a "text\t''
json\t''"
complete -c payrecon -n "__fish_payrecon_using_subcommand unmatched; and __fish_seen_subcommand_from match" -s h -l help -d 'Print help'
complete -c payrecon -n "__fish_payrecon_using_subcommand unmatched; and __fish_seen_subcommand_from help" -f -a "dismiss" -d 'Close an open one: a person\'s decision, recorded with their name, the reason and the time'
complete -c payrecon -n "__fish_payrecon_using_subcommand unmatched; and __fish_seen_subcommand_from help" -f -a "match" -d 'Tie an open one to the PENDING or REVIEW session it belongs to (its id becomes the session\'s provider_ref; the provider\'s answer still decides the session)'
complete -c payrecon -n "__fish_payrecon_using_subcommand unmatched; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c payrecon -n "__fish_payrecon_using_subcommand ledger; and not __fish_seen_subcommand_from backup restore copy help" -l config -d 'Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand ledger; and not __fish_seen_subcommand_from backup restore copy help" -l log-format -d 'Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)' -r -f -a "text\t''
json\t''"
complete -c payrecon -n "__fish_payrecon_using_subcommand ledger; and not __fish_seen_subcommand_from backup restore copy help" -s h -l help -d 'Print help'
complete -c payrecon -n "__fish_payrecon_using_subcommand ledger; and not __fish_seen_subcommand_from backup restore copy help" -f -a "backup" -d 'Copy the SQLite ledger of [ledger] path to FILE while daemons run (SQLite\'s online backup), checked (integrity_check, rows per table, sums per status); FILE must not exist'
complete -c payrecon -n "__fish_payrecon_using_subcommand ledger; and not __fish_seen_subcommand_from backup restore copy help" -f -a "restore" -d 'Write a backup back into the SQLite ledger of [ledger] path (stop every daemon first): checked first, the ledger as it was kept beside it as a backup'
complete -c payrecon -n "__fish_payrecon_using_subcommand ledger; and not __fish_seen_subcommand_from backup restore copy help" -f -a "copy" -d 'Copy the SQLite ledger of [ledger] path into an empty PostgreSQL ledger, verified (stop the daemons first)'
complete -c payrecon -n "__fish_payrecon_using_subcommand ledger; and not __fish_seen_subcommand_from backup restore copy help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c payrecon -n "__fish_payrecon_using_subcommand ledger; and __fish_seen_subcommand_from backup" -l config -d 'Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand ledger; and __fish_seen_subcommand_from backup" -l log-format -d 'Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)' -r -f -a "text\t''
json\t''"
complete -c payrecon -n "__fish_payrecon_using_subcommand ledger; and __fish_seen_subcommand_from backup" -s h -l help -d 'Print help'
complete -c payrecon -n "__fish_payrecon_using_subcommand ledger; and __fish_seen_subcommand_from restore" -l config -d 'Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand ledger; and __fish_seen_subcommand_from restore" -l log-format -d 'Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)' -r -f -a "text\t''
json\t''"
complete -c payrecon -n "__fish_payrecon_using_subcommand ledger; and __fish_seen_subcommand_from restore" -s h -l help -d 'Print help'
complete -c payrecon -n "__fish_payrecon_using_subcommand ledger; and __fish_seen_subcommand_from copy" -l to -d 'The PostgreSQL ledger, postgres://user@host/db' -r
complete -c payrecon -n "__fish_payrecon_using_subcommand ledger; and __fish_seen_subcommand_from copy" -l password-env -d 'The environment variable holding its password (not on the command line)' -r
complete -c payrecon -n "__fish_payrecon_using_subcommand ledger; and __fish_seen_subcommand_from copy" -l config -d 'Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand ledger; and __fish_seen_subcommand_from copy" -l log-format -d 'Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)' -r -f -a "text\t''
json\t''"
complete -c payrecon -n "__fish_payrecon_using_subcommand ledger; and __fish_seen_subcommand_from copy" -s h -l help -d 'Print help'
complete -c payrecon -n "__fish_payrecon_using_subcommand ledger; and __fish_seen_subcommand_from help" -f -a "backup" -d 'Copy the SQLite ledger of [ledger] path to FILE while daemons run (SQLite\'s online backup), checked (integrity_check, rows per table, sums per status); FILE must not exist'
complete -c payrecon -n "__fish_payrecon_using_subcommand ledger; and __fish_seen_subcommand_from help" -f -a "restore" -d 'Write a backup back into the SQLite ledger of [ledger] path (stop every daemon first): checked first, the ledger as it was kept beside it as a backup'
complete -c payrecon -n "__fish_payrecon_using_subcommand ledger; and __fish_seen_subcommand_from help" -f -a "copy" -d 'Copy the SQLite ledger of [ledger] path into an empty PostgreSQL ledger, verified (stop the daemons first)'
complete -c payrecon -n "__fish_payrecon_using_subcommand ledger; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c payrecon -n "__fish_payrecon_using_subcommand check-config" -l config -d 'Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand check-config" -l log-format -d 'Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)' -r -f -a "text\t''
json\t''"
complete -c payrecon -n "__fish_payrecon_using_subcommand check-config" -s h -l help -d 'Print help'
complete -c payrecon -n "__fish_payrecon_using_subcommand simulate" -l listen -r
complete -c payrecon -n "__fish_payrecon_using_subcommand simulate" -l api-key-env -d 'Demand this variable\'s value as every provider\'s key (Bearer, X-API-KEY, secret key, Mopay Nigeria\'s signing secret); without it any credentials are accepted' -r
complete -c payrecon -n "__fish_payrecon_using_subcommand simulate" -l write-config -d 'Write a config for all five providers against this simulator to FILE, then serve' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand simulate" -l callbacks-to -d 'Send providers\' signed callbacks to this payrecon API (http://127.0.0.1:9188) for sessions registered with "callback"; Moflay\'s and Vesicash\'s signed with $PAYRECON_SIM_WEBHOOK_SECRET (a whsec_ secret), Little\'s with the simulator\'s own key' -r
complete -c payrecon -n "__fish_payrecon_using_subcommand simulate" -l config -d 'Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand simulate" -l log-format -d 'Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)' -r -f -a "text\t''
json\t''"
complete -c payrecon -n "__fish_payrecon_using_subcommand simulate" -s h -l help -d 'Print help'
complete -c payrecon -n "__fish_payrecon_using_subcommand demo" -l config -d 'Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand demo" -l log-format -d 'Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)' -r -f -a "text\t''
json\t''"
complete -c payrecon -n "__fish_payrecon_using_subcommand demo" -s h -l help -d 'Print help'
complete -c payrecon -n "__fish_payrecon_using_subcommand completions" -l config -d 'Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand completions" -l log-format -d 'Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)' -r -f -a "text\t''
json\t''"
complete -c payrecon -n "__fish_payrecon_using_subcommand completions" -s h -l help -d 'Print help'
complete -c payrecon -n "__fish_payrecon_using_subcommand man" -l config -d 'Config file [default: $PAYRECON_CONFIG, then /etc/payrecon/payrecon.toml]' -r -F
complete -c payrecon -n "__fish_payrecon_using_subcommand man" -l log-format -d 'Log format, overriding `[log] format` (logs go to stderr; filter with RUST_LOG)' -r -f -a "text\t''
json\t''"
complete -c payrecon -n "__fish_payrecon_using_subcommand man" -s h -l help -d 'Print help'
complete -c payrecon -n "__fish_payrecon_using_subcommand help; and not __fish_seen_subcommand_from run once add import list show stats verify resolve audit export events unmatched ledger check-config simulate demo completions man help" -f -a "run" -d 'Daemon: reconcile on the cron schedule until SIGTERM/SIGINT'
complete -c payrecon -n "__fish_payrecon_using_subcommand help; and not __fish_seen_subcommand_from run once add import list show stats verify resolve audit export events unmatched ledger check-config simulate demo completions man help" -f -a "once" -d 'One pass over the sessions due now, then exit'
complete -c payrecon -n "__fish_payrecon_using_subcommand help; and not __fish_seen_subcommand_from run once add import list show stats verify resolve audit export events unmatched ledger check-config simulate demo completions man help" -f -a "add" -d 'Enqueue one session'
complete -c payrecon -n "__fish_payrecon_using_subcommand help; and not __fish_seen_subcommand_from run once add import list show stats verify resolve audit export events unmatched ledger check-config simulate demo completions man help" -f -a "import" -d 'Bulk enqueue from CSV (header: provider,session_id,reference,amount,currency,created_at,provider_ref)'
complete -c payrecon -n "__fish_payrecon_using_subcommand help; and not __fish_seen_subcommand_from run once add import list show stats verify resolve audit export events unmatched ledger check-config simulate demo completions man help" -f -a "list" -d 'List sessions, newest first'
complete -c payrecon -n "__fish_payrecon_using_subcommand help; and not __fish_seen_subcommand_from run once add import list show stats verify resolve audit export events unmatched ledger check-config simulate demo completions man help" -f -a "show" -d 'One session with its transitions and events'
complete -c payrecon -n "__fish_payrecon_using_subcommand help; and not __fish_seen_subcommand_from run once add import list show stats verify resolve audit export events unmatched ledger check-config simulate demo completions man help" -f -a "stats" -d 'Sessions by provider × status, COMPLETED totals per currency, events waiting and dead'
complete -c payrecon -n "__fish_payrecon_using_subcommand help; and not __fish_seen_subcommand_from run once add import list show stats verify resolve audit export events unmatched ledger check-config simulate demo completions man help" -f -a "verify" -d 'Check one session with its provider now, record any transition, print the recorded state'
complete -c payrecon -n "__fish_payrecon_using_subcommand help; and not __fish_seen_subcommand_from run once add import list show stats verify resolve audit export events unmatched ledger check-config simulate demo completions man help" -f -a "resolve" -d 'A person\'s decision on a PENDING or REVIEW session (source `manual`)'
complete -c payrecon -n "__fish_payrecon_using_subcommand help; and not __fish_seen_subcommand_from run once add import list show stats verify resolve audit export events unmatched ledger check-config simulate demo completions man help" -f -a "audit" -d 'The audit log: people\'s decisions and actions, newest first'
complete -c payrecon -n "__fish_payrecon_using_subcommand help; and not __fish_seen_subcommand_from run once add import list show stats verify resolve audit export events unmatched ledger check-config simulate demo completions man help" -f -a "export" -d 'One row per session for accounting'
complete -c payrecon -n "__fish_payrecon_using_subcommand help; and not __fish_seen_subcommand_from run once add import list show stats verify resolve audit export events unmatched ledger check-config simulate demo completions man help" -f -a "events" -d 'The events outbox'
complete -c payrecon -n "__fish_payrecon_using_subcommand help; and not __fish_seen_subcommand_from run once add import list show stats verify resolve audit export events unmatched ledger check-config simulate demo completions man help" -f -a "unmatched" -d 'Payments a provider lists as paid that no session holds (open ones unless --all)'
complete -c payrecon -n "__fish_payrecon_using_subcommand help; and not __fish_seen_subcommand_from run once add import list show stats verify resolve audit export events unmatched ledger check-config simulate demo completions man help" -f -a "ledger" -d 'The ledger itself'
complete -c payrecon -n "__fish_payrecon_using_subcommand help; and not __fish_seen_subcommand_from run once add import list show stats verify resolve audit export events unmatched ledger check-config simulate demo completions man help" -f -a "check-config" -d 'Validate the config and report problems; exit 2 on any'
complete -c payrecon -n "__fish_payrecon_using_subcommand help; and not __fish_seen_subcommand_from run once add import list show stats verify resolve audit export events unmatched ledger check-config simulate demo completions man help" -f -a "simulate" -d 'Run the provider simulator'
complete -c payrecon -n "__fish_payrecon_using_subcommand help; and not __fish_seen_subcommand_from run once add import list show stats verify resolve audit export events unmatched ledger check-config simulate demo completions man help" -f -a "demo" -d 'The embedded demo: simulator + temporary ledger + sample sessions, reconciled to the end'
complete -c payrecon -n "__fish_payrecon_using_subcommand help; and not __fish_seen_subcommand_from run once add import list show stats verify resolve audit export events unmatched ledger check-config simulate demo completions man help" -f -a "completions" -d 'Print shell completions'
complete -c payrecon -n "__fish_payrecon_using_subcommand help; and not __fish_seen_subcommand_from run once add import list show stats verify resolve audit export events unmatched ledger check-config simulate demo completions man help" -f -a "man" -d 'Print the man page (roff)'
complete -c payrecon -n "__fish_payrecon_using_subcommand help; and not __fish_seen_subcommand_from run once add import list show stats verify resolve audit export events unmatched ledger check-config simulate demo completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c payrecon -n "__fish_payrecon_using_subcommand help; and __fish_seen_subcommand_from events" -f -a "list" -d 'Events, newest first'
complete -c payrecon -n "__fish_payrecon_using_subcommand help; and __fish_seen_subcommand_from events" -f -a "replay" -d 'Put events back in line with a fresh schedule'
complete -c payrecon -n "__fish_payrecon_using_subcommand help; and __fish_seen_subcommand_from unmatched" -f -a "dismiss" -d 'Close an open one: a person\'s decision, recorded with their name, the reason and the time'
complete -c payrecon -n "__fish_payrecon_using_subcommand help; and __fish_seen_subcommand_from unmatched" -f -a "match" -d 'Tie an open one to the PENDING or REVIEW session it belongs to (its id becomes the session\'s provider_ref; the provider\'s answer still decides the session)'
complete -c payrecon -n "__fish_payrecon_using_subcommand help; and __fish_seen_subcommand_from ledger" -f -a "backup" -d 'Copy the SQLite ledger of [ledger] path to FILE while daemons run (SQLite\'s online backup), checked (integrity_check, rows per table, sums per status); FILE must not exist'
complete -c payrecon -n "__fish_payrecon_using_subcommand help; and __fish_seen_subcommand_from ledger" -f -a "restore" -d 'Write a backup back into the SQLite ledger of [ledger] path (stop every daemon first): checked first, the ledger as it was kept beside it as a backup'
complete -c payrecon -n "__fish_payrecon_using_subcommand help; and __fish_seen_subcommand_from ledger" -f -a "copy" -d 'Copy the SQLite ledger of [ledger] path into an empty PostgreSQL ledger, verified (stop the daemons first)'
