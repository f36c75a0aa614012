#!/bin/sh
# nimbus's /lambda-entrypoint.sh (issue 21): AWS's images start their runtime through a script at this path
# with the handler as its one argument; here it sets _HANDLER and runs the custom runtime's bootstrap.
if [ $# -ne 1 ]; then
  echo "entrypoint requires the handler name to be the first argument" 1>&2
  exit 142
fi
export _HANDLER="$1"
if [ -x "${LAMBDA_TASK_ROOT:-/var/task}/bootstrap" ]; then
  exec "${LAMBDA_TASK_ROOT:-/var/task}/bootstrap"
fi
exec /opt/bootstrap
