"""nimbus's Python runtime: the code that runs INSIDE an execution environment, as
`<interpreter> -I -S bootstrap.py`. Stdlib only, Python 3.10+. It imports the handler once (INIT), then
serves invocations that the host sends over an inherited socket, answering each with one frame.

Behaviour visible to user code follows AWS's runtime interface client (awslambdaric): the context object,
the error documents and their `[ERROR]` log lines, the logging format and `_X_AMZN_TRACE_ID`.

Wire format (mirrored by nimbus.sandbox.protocol on the host; both are tested against each other):
every frame is `u32 length` + body. Host -> runtime, INVOKE: `u8 1, i64 deadline_ms`, then six
`u32 len + bytes` fields: request id, invoked ARN, client context, identity, trace id, payload.
Runtime -> host, READY (2) after INIT or RESULT (3) after an invocation: `u8 kind, u8 status (0 ok,
1 error), u64 duration_ns, u64 max_rss_kb`, `u32 len + error type`, `u32 len + payload`, then the log
lines: `u32 count` and per line `u64 epoch_ms, u32 len + utf-8 text`. Response streaming: INVOKE_STREAM (5)
has INVOKE's layout; the runtime answers it with CHUNK frames (`u8 4` + raw bytes) before its RESULT.
"""

import os
import sys
import time

_HDR = None  # struct objects, created in main() (keeps import of this module side-effect free)
MAX_LINE = 256 * 1024  # CloudWatch's event size limit
MAX_LOG_BYTES = 4 * 1024 * 1024  # per invocation; beyond this lines are dropped (the host is protected)
ERROR_LOG_IDENT = "\u00a0"

_request_id = None  # the current invocation, read by the logging filter


# --------------------------------------------------------------------------------------------------
# Log capture: print() and logging produce timestamped lines, shipped with the next frame.


class LogBuffer:
    """Lines produced since the last frame, with their epoch-ms timestamps."""

    def __init__(self):
        self.lines = []
        self.size = 0
        self.dropped = 0

    def add(self, text):
        if len(text) > MAX_LINE:
            text = text[:MAX_LINE]
        if self.size + len(text) > MAX_LOG_BYTES:
            self.dropped += 1
            return
        self.size += len(text)
        self.lines.append((time.time_ns() // 1_000_000, text))

    def take(self):
        lines, self.lines = self.lines, []
        if self.dropped:
            note = f"[nimbus] {self.dropped} log lines dropped (over {MAX_LOG_BYTES} bytes)"
            lines.append((time.time_ns() // 1_000_000, note))
            self.dropped = 0
        self.size = 0
        return lines


class _BinaryWriter:
    """`sys.stdout.buffer` for code that writes bytes."""

    def __init__(self, text):
        self._text = text

    def write(self, data):
        self._text.write(bytes(data).decode("utf-8", "replace"))
        return len(data)

    def flush(self):
        pass

    def fileno(self):
        return self._text.fileno()

    def writable(self):
        return True

    def isatty(self):
        return False


class CapturedStream:
    """Replaces sys.stdout / sys.stderr: one log event per written line, where a line ends with a write that
    ends in a newline, so one `print()` of several lines is one event, as AWS's runtime logs it (issue 21)."""

    encoding = "utf-8"
    errors = "replace"
    newlines = None
    line_buffering = True

    def __init__(self, sink, fd):
        self._sink = sink
        self._fd = fd
        self._partial = ""
        self.buffer = _BinaryWriter(self)

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        if not s.endswith("\n"):
            self._partial += s
            return len(s)
        self._sink.add(self._partial + s[:-1])
        self._partial = ""
        return len(s)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        # Lines are shipped with the invocation's result (one write per invocation); an explicit flush
        # (print(..., flush=True), logging's handlers) hands them over now, so output written before an
        # abrupt death (SIGKILL, OOM) is not lost, as on AWS.
        if self._partial or self._sink.lines:
            hand_over_logs((self,))

    def finish(self):
        """End of an invocation: a partial line is still a log event."""
        if self._partial:
            self._sink.add(self._partial)
            self._partial = ""

    def fileno(self):
        return self._fd

    def isatty(self):
        return False

    def writable(self):
        return True

    def readable(self):
        return False

    def seekable(self):
        return False

    @property
    def closed(self):
        return False

    def close(self):
        pass


# --------------------------------------------------------------------------------------------------
# The context object, as awslambdaric's LambdaContext.


def _repr(obj, names):
    return "{}([{}])".format(type(obj).__name__, ",".join(f"{n}={getattr(obj, n)}" for n in names))


class CognitoIdentity:
    __slots__ = ["cognito_identity_id", "cognito_identity_pool_id"]

    def __repr__(self):
        return _repr(self, self.__slots__)


class Client:
    __slots__ = ["installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name"]

    def __repr__(self):
        return _repr(self, self.__slots__)


class ClientContext:
    __slots__ = ["custom", "env", "client"]

    def __repr__(self):
        return _repr(self, self.__slots__)


def _obj_from_dict(cls, data):
    if data is None:
        return None
    obj = cls()
    for name in cls.__slots__:
        setattr(obj, name, data.get(name, None))
    return obj


_ENV_SNAPSHOT = None


def _environment_snapshot():
    """The function's identity as the context object reports it (fixed for the environment's life)."""
    global _ENV_SNAPSHOT
    env = os.environ
    _ENV_SNAPSHOT = tuple(env.get(name) for name in (
        "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION"))
    return _ENV_SNAPSHOT


class LambdaContext:
    def __init__(self, invoke_id, client_context, cognito_identity, epoch_deadline_time_in_ms,
                 invoked_function_arn=None, tenant_id=None):
        self.aws_request_id = invoke_id
        # os.environ lookups cost ~2 us each on the hot path: read once (see _environment_snapshot).
        (self.log_group_name, self.log_stream_name, self.function_name, self.memory_limit_in_mb,
         self.function_version) = _ENV_SNAPSHOT or _environment_snapshot()
        self.invoked_function_arn = invoked_function_arn
        self.tenant_id = tenant_id
        if client_context is None:
            self.client_context = None
        else:
            self.client_context = _obj_from_dict(ClientContext, client_context)
            self.client_context.client = _obj_from_dict(Client, self.client_context.client)
        self.identity = identity = CognitoIdentity()
        if cognito_identity is None:
            identity.cognito_identity_id = identity.cognito_identity_pool_id = None
        else:
            identity.cognito_identity_id = cognito_identity.get("cognitoIdentityId")
            identity.cognito_identity_pool_id = cognito_identity.get("cognitoIdentityPoolId")
        self._epoch_deadline_time_in_ms = epoch_deadline_time_in_ms

    def get_remaining_time_in_millis(self):
        delta = self._epoch_deadline_time_in_ms - int(time.time() * 1000)
        return delta if delta > 0 else 0

    def log(self, msg):
        _LOGS.add(str(msg).rstrip("\n"))

    def __repr__(self):
        return _repr(self, ("aws_request_id", "log_group_name", "log_stream_name", "function_name",
                            "memory_limit_in_mb", "function_version", "invoked_function_arn", "client_context",
                            "identity", "tenant_id"))


# --------------------------------------------------------------------------------------------------
# Errors, as awslambdaric reports them.


class FaultException(Exception):
    MARSHAL_ERROR = "Runtime.MarshalError"
    UNMARSHAL_ERROR = "Runtime.UnmarshalError"
    USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
    HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
    IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
    BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"
    MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
    LAMBDA_CONTEXT_UNMARSHAL_ERROR = "Runtime.LambdaContextUnmarshalError"

    def __init__(self, exception_type, msg, trace=None):
        super().__init__(msg)
        self.msg = msg
        self.exception_type = exception_type
        self.trace = trace


def make_error(error_message, error_type, stack_trace, invoke_id=None):
    return {
        "errorMessage": error_message if error_message else "",
        "errorType": error_type if error_type else "",
        "requestId": invoke_id if invoke_id is not None else "",
        "stackTrace": stack_trace if stack_trace else [],
    }


def _replace_indent(line):
    n = len(line) - len(line.lstrip(" "))
    return ERROR_LOG_IDENT * n + line[n:]


def error_log_text(error):
    """The `[ERROR] Type: message` event (with the traceback) the runtime logs for a function error; with
    the JSON log format, awslambdaric's JSON record of it instead (with `level`, as since its fix of September 2026)."""
    if os.environ.get("AWS_LAMBDA_LOG_FORMAT") == "JSON":
        import json

        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return json.dumps({"timestamp": stamp, "level": "ERROR", **error}, ensure_ascii=False)
    text = "[ERROR]"
    etype, emsg = error.get("errorType"), error.get("errorMessage")
    if etype:
        text += " " + etype
    if emsg:
        if etype:
            text += ":"
        text += " " + emsg
    lines = [text]
    stack = error.get("stackTrace")
    if stack is not None:
        lines.append("Traceback (most recent call last):")
        for element in stack:
            if element == "":
                lines.append("")
            else:
                lines.extend(_replace_indent(t) for t in element.splitlines())
    return "\n".join(lines)


def _user_traceback(tb):
    import traceback

    frames = [(f.filename, f.lineno, f.name, f.line) for f in traceback.extract_tb(tb)]
    for i, frame in enumerate(frames):
        if "/bootstrap.py" not in frame[0]:
            frames = frames[i:]
            break
    return traceback.format_list(frames)


def exception_error(exc, invoke_id=None):
    if isinstance(exc, FaultException):
        return make_error(exc.msg, exc.exception_type, exc.trace, invoke_id)
    return make_error(str(exc), type(exc).__name__, _user_traceback(exc.__traceback__), invoke_id)


# --------------------------------------------------------------------------------------------------
# INIT


def get_handler(handler):
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as e:
        raise FaultException(FaultException.MALFORMED_HANDLER_NAME,
                             f"Bad handler '{handler}': {str(e)}") from None
    try:
        if modname.split(".")[0] in sys.builtin_module_names:
            raise FaultException(FaultException.BUILT_IN_MODULE_CONFLICT,
                                 f"Cannot use built-in module {modname} as a handler module")
        dotted = modname.replace("/", ".")
        __import__(dotted)
        module = sys.modules[dotted]
    except ImportError as e:
        raise FaultException(FaultException.IMPORT_MODULE_ERROR,
                             f"Unable to import module '{modname}': {str(e)}") from None
    except SyntaxError as e:
        trace = [f'  File "{e.filename}" Line {e.lineno}\n    {e.text}']
        raise FaultException(FaultException.USER_CODE_SYNTAX_ERROR,
                             f"Syntax error in module '{modname}': {str(e)}", trace) from None
    try:
        return getattr(module, fname)
    except AttributeError:
        raise FaultException(FaultException.HANDLER_NOT_FOUND,
                             f"Handler '{fname}' missing on module '{modname}'") from None


def _limit_open_files():
    """1,024 open files per environment, as AWS's quotas page documents (issue 21); set in the environment
    itself (a zygote serving many forks keeps its own limit)."""
    import resource

    try:  # noqa: SIM105 (contextlib costs milliseconds of start-up)
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
    except (ValueError, OSError):
        pass


def setup_path(task_root, opt="/opt"):
    minor = "python{}.{}".format(*sys.version_info[:2])
    # -I -S leaves only the standard library on sys.path: put the function's code and layers first.
    sys.path[:0] = [task_root, f"{opt}/python/lib/{minor}/site-packages", f"{opt}/python"]
    # Last: the runtime's own importable helpers (snapshot_restore_py, nimbus.runtime.snapshot).
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))


class LoggingHook:
    """Sets up `logging` (root handler, format, level) when something first imports it, rather than at
    start-up: importing logging costs several milliseconds of every cold start that never logs."""

    def find_spec(self, name, path=None, target=None):
        if name != "logging":
            return None
        sys.meta_path.remove(self)
        for finder in sys.meta_path:
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_configure(module):
            exec_module(module)
            setup_logging(module, _LOGS)

        loader.exec_module = exec_and_configure
        return spec


def setup_logging(logging, sink):

    class Handler(logging.Handler):
        def __init__(self):
            super().__init__()
            self.log_sink = sink

        def emit(self, record):
            try:
                sink.add(self.format(record).rstrip("\n"))
            except Exception:
                self.handleError(record)

    class Filter(logging.Filter):
        def filter(self, record):
            record.aws_request_id = _request_id or ""
            record.tenant_id = None
            return True

    logging.Formatter.converter = time.gmtime
    handler = Handler()
    log_format = os.environ.get("AWS_LAMBDA_LOG_FORMAT", "")
    level = {None: "", "TRACE": "DEBUG"}.get(os.environ.get("AWS_LAMBDA_LOG_LEVEL"),
                                             os.environ.get("AWS_LAMBDA_LOG_LEVEL", "")).upper()
    if log_format.upper() == "JSON":
        handler.setFormatter(_json_formatter(logging))
    else:
        handler.setFormatter(logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
            "%Y-%m-%dT%H:%M:%S"))
    if level in logging._nameToLevel:
        logging.getLogger().setLevel(level)
    handler.addFilter(Filter())
    logging.getLogger().addHandler(handler)


def _json_formatter(logging):
    import json
    import traceback
    from datetime import datetime, timezone

    reserved = {"name", "msg", "args", "levelname", "levelno", "pathname", "filename", "module", "exc_info",
                "exc_text", "stack_info", "lineno", "funcName", "created", "msecs", "relativeCreated",
                "thread", "threadName", "processName", "process", "aws_request_id", "tenant_id",
                "_frame_type", "taskName"}
    encode = json.JSONEncoder(ensure_ascii=False).encode

    class JsonFormatter(logging.Formatter):
        def format(self, record):
            record.levelno = min(50, max(0, record.levelno)) // 10 * 10
            record.levelname = logging.getLevelName(record.levelno)
            ts = datetime.fromtimestamp(record.created, tz=timezone.utc)  # noqa: UP017 (3.10)  # noqa: UP017 (3.10)
            exc = record.exc_info
            result = {
                "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                "level": record.levelname,
                "message": record.getMessage(),
                "logger": record.name,
                "stackTrace": traceback.format_tb(exc[2]) if exc else None,
                "errorType": exc[0].__name__ if exc else None,
                "errorMessage": str(exc[1]) if exc else None,
                "requestId": getattr(record, "aws_request_id", None),
                "location": f"{record.pathname}:{record.funcName}:{record.lineno}" if exc else None,
            }
            result.update((k, v) for k, v in record.__dict__.items() if k not in reserved and k not in result)
            return encode({k: v for k, v in result.items() if v is not None}) + "\n"

    return JsonFormatter()


# --------------------------------------------------------------------------------------------------
# Wire


class Channel:
    """The control socket, used through os.read/os.write on its fd (the socket module costs milliseconds of
    start-up): length-prefixed frames, buffered reads (one read per warm invocation)."""

    def __init__(self, fd):
        import select
        import struct

        self.fd = fd
        # Wait in poll(), not in a blocking read: when the host consumes our last frame the kernel wakes
        # every sleeper on this socket (unix_write_space); a blocked reader would wake for nothing (a context
        # switch per invocation), a poll waiting for POLLIN is filtered out.
        self.poller = select.poll()
        self.poller.register(fd, select.POLLIN)
        self.buf = bytearray()
        self.rbuf = bytearray(256 * 1024)
        self.rview = memoryview(self.rbuf)
        self.u32 = struct.Struct("!I")
        self.invoke_head = struct.Struct("!Bq")
        self.result_head = struct.Struct("!IBBQQ")
        self.line_head = struct.Struct("!QI")

    def read_frame(self):
        buf = self.buf
        while True:
            if len(buf) >= 4:
                (n,) = self.u32.unpack_from(buf, 0)
                if len(buf) >= 4 + n:
                    frame = bytes(buf[4:4 + n])
                    del buf[:4 + n]
                    return frame
            try:
                self.poller.poll()
                n = os.readv(self.fd, [self.rbuf])  # into a reused buffer: no allocation per read
            except InterruptedError:
                continue
            if not n:
                return None
            buf += self.rview[:n]

    def parse_invoke(self, frame):
        kind, deadline = self.invoke_head.unpack_from(frame, 0)
        pos = 9  # after `u8 kind, i64 deadline_ms`
        fields = []
        append = fields.append
        unpack = self.u32.unpack_from
        for _ in range(6):
            n = unpack(frame, pos)[0] + pos + 4
            append(frame[pos + 4:n])
            pos = n
        return deadline, fields

    def send_chunk(self, data):
        """One CHUNK frame (`u32 length, u8 4` + raw bytes) per piece of at most 1 MiB, written now."""
        view = memoryview(data)
        while view:
            piece, view = view[:1 << 20], view[1 << 20:]
            out = memoryview(self.u32.pack(len(piece) + 1) + b"\x04" + piece)
            while out:
                out = out[os.write(self.fd, out):]

    def send_result(self, kind, ok, duration_ns, max_rss_kb, error_type, payload, lines):
        et = error_type.encode() if error_type else b""
        u32 = self.u32.pack
        parts = [b"", u32(len(et)), et, u32(len(payload)), payload, u32(len(lines))]
        size = 12 + len(et) + len(payload)
        if lines:
            lh = self.line_head.pack
            for ms, text in lines:
                data = text.encode("utf-8", "replace")
                parts.append(lh(ms, len(data)))
                parts.append(data)
                size += 12 + len(data)
        parts[0] = self.result_head.pack(size + 18, kind, 0 if ok else 1, duration_ns, max_rss_kb)
        data = b"".join(parts)
        n = os.write(self.fd, data)
        if n < len(data):
            data = memoryview(data)[n:]
            while data:
                data = data[os.write(self.fd, data):]


class ApiChannel:
    """Channel's interface over the Lambda Runtime API (AWS_LAMBDA_RUNTIME_API), for functions whose layers
    bring external extensions: they run in a Runtime API environment (runtime/apilauncher.py starts them,
    sandbox/runtimeapi.py serves the API), with this file as the runtime. Log lines go to fd 1 as they are
    logged (the host reads the runtime's output there), one record per line."""

    PREFIX = "/2018-06-01/runtime/"

    def __init__(self, address):
        import http.client

        self.fd = -1
        self.conn = http.client.HTTPConnection(address)
        self.request_id = ""
        _LOGS.add = self.log_line

    @staticmethod
    def log_line(text):
        view = memoryview((text[:MAX_LINE].replace("\n", "\r") + "\n").encode("utf-8", "replace"))
        while view:
            view = view[os.write(1, view):]

    def _call(self, method, path, body=None, headers=None):
        self.conn.request(method, self.PREFIX + path, body=body, headers=headers or {})
        response = self.conn.getresponse()
        return response, response.read()

    def read_frame(self):
        try:
            response, body = self._call("GET", "invocation/next")
        except OSError:
            return None
        h = response.headers
        self.request_id = h.get("Lambda-Runtime-Aws-Request-Id", "")
        fields = [h.get(name, "").encode() for name in (
            "Lambda-Runtime-Aws-Request-Id", "Lambda-Runtime-Invoked-Function-Arn", "Lambda-Runtime-Client-Context",
            "Lambda-Runtime-Cognito-Identity", "Lambda-Runtime-Trace-Id")]
        return b"\x01", int(h.get("Lambda-Runtime-Deadline-Ms") or 0), [*fields, body]

    def parse_invoke(self, frame):
        return frame[1], frame[2]

    def send_chunk(self, data):  # never asked to stream (no INVOKE_STREAM frames here)
        raise RuntimeError("no response streaming over the Runtime API client")

    def send_result(self, kind, ok, duration_ns, max_rss_kb, error_type, payload, lines):
        for _, text in lines:
            self.log_line(text)
        headers = {"Lambda-Runtime-Function-Error-Type": error_type} if error_type else {}
        if kind == 2:  # INIT: success is said by asking for the first invocation
            if not ok:
                self._call("POST", "init/error", payload, headers)
        elif ok:
            self._call("POST", f"invocation/{self.request_id}/response", payload)
        else:
            self._call("POST", f"invocation/{self.request_id}/error", payload, headers)


_LOGS = LogBuffer()


_getrusage = None


def _max_rss_kb():
    global _getrusage
    if _getrusage is None:
        import resource

        _getrusage = resource.getrusage
    return max(_getrusage(0).ru_maxrss, _getrusage(-1).ru_maxrss)  # RUSAGE_SELF, RUSAGE_CHILDREN


FLUSHED = "\0nimbus-flushed"  # last line of a flush: the host may kill the runtime now


def hand_over_logs(streams, last_line=""):
    """Write what was logged but not yet shipped to fd 1, which the host reads: the process is about to be
    killed or to exit, and its log buffer would die with it. Embedded newlines become \r, as AWS's runtime
    does, to keep one record per line."""
    for stream in streams:
        finish = getattr(stream, "finish", None)  # not ours if the runtime failed before replacing them
        if finish is not None:
            finish()
    lines = _LOGS.take()
    if not lines and not last_line:
        return
    data = "".join(text.replace("\n", "\r") + "\n" for _, text in lines) + (last_line and last_line + "\n")
    view = memoryview(data.encode("utf-8", "replace"))
    try:
        while view:
            view = view[os.write(1, view):]
    except OSError:
        pass


def _on_kill_notice(*streams):
    """On SIGUSR2 (the platform is about to kill this environment, e.g. on a timeout), hand over the logs."""
    import _signal  # the C module: `signal` imports enum, milliseconds of start-up

    _signal.signal(_signal.SIGUSR2, lambda _signum, _frame: hand_over_logs(streams, FLUSHED))


def _chunk_bytes(item):
    if isinstance(item, str):
        return item.encode()
    if isinstance(item, (bytes, bytearray, memoryview)):
        return item
    raise FaultException(FaultException.MARSHAL_ERROR,
                         f"Unable to marshal response: streamed items must be bytes or str, not "
                         f"{type(item).__name__}")


def stream_response(channel, response, dumps):
    """Response streaming: each item of a generator/iterator the handler returned goes to the host as a
    CHUNK the moment it is produced; any other value is one chunk, encoded as a buffered response."""
    if hasattr(type(response), "__next__"):
        for item in response:
            data = _chunk_bytes(item)
            if data:
                channel.send_chunk(data)
        return b""
    if not isinstance(response, bytes):
        try:
            response = dumps(response).encode()
        except Exception as e:
            raise FaultException(FaultException.MARSHAL_ERROR, f"Unable to marshal response: {str(e)}") from None
    if response:
        channel.send_chunk(response)
    return b""


def hand_over_endpoint(fd):
    """Create this environment's 127.0.0.1:9001 listener (we are in its network namespace) and hand it to
    nimbus over the socket `fd` (one SCM_RIGHTS message): nimbus serves the platform API on it. Uses the C
    module: `socket` imports enum, milliseconds of start-up."""
    if not fd:
        return
    import _socket
    import struct

    channel = _socket.socket(fileno=int(fd))
    listener = None
    try:
        listener = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        listener.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 9001))
        listener.listen(128)
        rights = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", listener.fileno()))]
        channel.sendmsg([b"L"], rights)
    except OSError as e:  # no endpoint then (nimbus sees the socket close): the function still runs
        os.write(2, f"nimbus: no 127.0.0.1:9001 endpoint: {e}\n".encode())
    finally:
        if listener is not None:
            listener.close()
        channel.close()


def main():
    global _request_id
    import json

    env = os.environ
    max_response = int(env.pop("_NIMBUS_MAX_RESPONSE", "6291456"))
    api_client_opt = env.pop("_NIMBUS_API_CLIENT_OPT_DIR", None)  # set: a Runtime API client (see ApiChannel)
    if api_client_opt is not None:
        channel = ApiChannel(env["AWS_LAMBDA_RUNTIME_API"])
        env["_NIMBUS_OPT_DIR"] = api_client_opt or "/opt"
    else:
        fd = int(env.pop("_NIMBUS_CONTROL_FD", "3"))
        os.set_inheritable(fd, False)  # subprocesses of the function must not hold the control channel
        channel = Channel(fd)
        hand_over_endpoint(env.pop("_NIMBUS_API_FD", ""))

    stdout = CapturedStream(_LOGS, 1)
    stderr = CapturedStream(_LOGS, 2)
    sys.stdout, sys.stderr = stdout, stderr
    _on_kill_notice(stdout, stderr)
    task_root = env.get("LAMBDA_TASK_ROOT", "/var/task")
    setup_path(task_root, env.pop("_NIMBUS_OPT_DIR", "/opt"))
    try:  # noqa: SIM105 (contextlib costs milliseconds of start-up)
        os.chdir(task_root)
    except OSError:
        pass

    sys.meta_path.insert(0, LoggingHook())
    zygote = None
    if env.get("_NIMBUS_ZYGOTE"):  # a fork server: see nimbus_zygote.py
        import nimbus_zygote as zygote

        runtime_zygote = env["_NIMBUS_ZYGOTE"] == "runtime"
        zygote.prepare()
        if runtime_zygote:  # no user code here: READY at once; each forked environment runs INIT itself
            zygote.preload()
            channel.send_result(2, True, 0, _max_rss_kb(), None, b"", _LOGS.take())
            channel = zygote.serve_runtime(channel, Channel, (stdout, stderr))
            zygote = None
    try:
        handler = get_handler(env.get("_HANDLER", ""))
        if zygote is not None:
            zygote.run_before_snapshot(FaultException)
    except Exception as e:
        import logging

        error = exception_error(e)
        logging.warning(
            "LAMBDA_WARNING: Unhandled exception. The most likely cause is an issue in the function code. "
            "However, in rare cases, a Lambda runtime update can cause unexpected function behavior. For "
            "functions using managed runtimes, runtime updates can be triggered by a function change, or can "
            "be applied automatically. To determine if the runtime has been updated, check the runtime "
            "version in the INIT_START log entry. If this error correlates with a change in the runtime "
            "version, you may be able to mitigate this error by temporarily rolling back to the previous "
            "runtime version. For more information, see "
            "https://docs.aws.amazon.com/lambda/latest/dg/runtimes-update.html")
        _LOGS.add(error_log_text(error))
        stdout.finish()
        stderr.finish()
        channel.send_result(2, False, 0, _max_rss_kb(), error["errorType"],
                            json.dumps(error).encode(), _LOGS.take())
        sys.exit(1)
    stdout.finish()
    stderr.finish()
    channel.send_result(2, True, 0, _max_rss_kb(), None, b"", _LOGS.take())
    if zygote is not None:  # returns only in a forked environment, with its own channel
        channel = zygote.serve_and_restore(channel, Channel, _LOGS, (stdout, stderr), _max_rss_kb)

    _limit_open_files()
    _environment_snapshot()
    traced = "_X_AMZN_TRACE_ID" in env
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    loads = json.loads
    perf = time.perf_counter_ns
    while True:
        frame = channel.read_frame()
        if frame is None:
            return
        deadline, (rid, arn, client_context, identity, trace, payload) = channel.parse_invoke(frame)
        request_id = rid.decode()
        _request_id = request_id
        if trace:
            env["_X_AMZN_TRACE_ID"] = trace.decode()
            traced = True
        elif traced:
            env.pop("_X_AMZN_TRACE_ID", None)
            traced = False
        error = None
        start = perf()
        try:
            try:
                cc = loads(client_context) if client_context else None
                ci = loads(identity) if identity else None
            except Exception as e:
                raise FaultException(FaultException.LAMBDA_CONTEXT_UNMARSHAL_ERROR,
                                     f"Unable to parse Client Context JSON: {e}") from None
            context = LambdaContext(request_id, cc, ci, deadline, arn.decode())
            try:
                event = loads(payload) if payload else {}
            except Exception as e:
                raise FaultException(FaultException.UNMARSHAL_ERROR,
                                     f"Unable to unmarshal input: {str(e)}") from None
            response = handler(event, context)
            if frame[0] == 5:  # INVOKE_STREAM: InvokeWithResponseStream
                result = stream_response(channel, response, dumps)
            elif isinstance(response, bytes):
                result = response
            else:
                try:
                    result = dumps(response).encode()
                except Exception as e:
                    if not hasattr(type(response), "__next__"):
                        raise FaultException(FaultException.MARSHAL_ERROR,
                                             f"Unable to marshal response: {str(e)}") from None
                    # A streaming handler invoked without streaming: its chunks, joined.
                    result = b"".join(bytes(_chunk_bytes(item)) for item in response)
        except Exception as e:
            error = exception_error(e, request_id)
        duration = perf() - start
        if error is None and len(result) > max_response:
            message = f"Response payload size exceeded maximum allowed payload size ({max_response} bytes)."
            error = make_error(message, "Function.ResponseSizeTooLarge", None, request_id)
            error.pop("stackTrace")
            error.pop("requestId")
        stdout.finish()
        stderr.finish()
        if error is not None:
            if error["errorType"] != "Function.ResponseSizeTooLarge":
                _LOGS.add(error_log_text(error))
            channel.send_result(3, False, duration, _max_rss_kb(), error["errorType"],
                                dumps(error).encode(), _LOGS.take())
        else:
            channel.send_result(3, True, duration, _max_rss_kb(), None, result, _LOGS.take())
        _request_id = None


if __name__ == "__main__":
    try:
        main()
    finally:  # sys.exit() in user code, or a fatal error: keep what the function logged
        hand_over_logs((sys.stdout, sys.stderr))
