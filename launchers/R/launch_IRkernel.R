# R kernel launcher for YARN cluster mode (launcher protocol v2; see PROTOCOL.md).
#
# Runs under `spark-submit launch_IRkernel.R --kernel-id ... --response-address ...
# --public-key ... --port-range lo..hi --spark-context-initialization-mode lazy|eager|none
# --transport-encryption curve|none`; Spark's RRunner has started the JVM RBackend and set
# EXISTING_SPARKR_BACKEND_PORT and SPARKR_BACKEND_AUTH_SECRET. Files next to this one:
# rbackend_client.R, launch_r_helper.py, curve_proxy.py, launcher_protocol.py. Steps:
#
# 1. take KERNEL_LAUNCH_TOKEN and remove it from the environment (user code and its
#    subprocesses never see it);
# 2. Spark: YARN's ApplicationMaster kills a driver that has no SparkContext within
#    spark.yarn.am.waitTime, so the SparkContext is always asked for before the kernel
#    starts. `eager` waits for it; `lazy` only sends the request over the RBackend and
#    reads the answer when `sc`/`spark` are first used (the JVM builds the context while
#    the kernel already answers). With the SparkR package, `spark` is SparkR's session;
#    without it, `sc`/`spark` are opaque JVM handles usable with jcall()/jstatic();
# 3. IRkernel binds its five ZMQ sockets itself. `curve` (the default): on 127.0.0.1 only, at
#    any free ports (IRkernel cannot be a CurveZMQ server; the helper's CurveZMQ proxy is what
#    the network sees). `none`, or no CurveZMQ in the container's pyzmq: each at random ports
#    inside the range on the reachable address, retrying on collisions. No port is released and
#    re-bound, so there is no hand-over window at all;
# 4. the helper (container Python) gets the token and connection info over a private pipe,
#    with `curve` starts the CurveZMQ proxy (five CURVE server sockets in the range, the key
#    pair in its memory only), binds the control port in the range, sends the encrypted
#    response and serves the control port (signals go to this R process);
# 5. the kernel runs; on shutdown IRkernel quits with status 0 and an exit finalizer stops
#    Spark, so YARN reports FINISHED.

# Everything lives in this local environment, not in the user's global one.
local({
  yg_env <- environment()

  # The directory the script was started from, symbolic links NOT resolved: YARN localizes each
  # shipped file into a cache directory of its own and links it into the container's working
  # directory, so only that directory holds the script and the files next to it.
  yg_script_dir <- function() {
    f <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
    if (length(f) != 1L) return(getwd())
    if (!startsWith(f, "/")) f <- file.path(getwd(), f)
    dirname(f)
  }

  yg_log <- function(...) {
    cat(format(Sys.time(), "[%y/%m/%d %H:%M:%S]"), "R launcher:", ..., "\n", file = stderr())
  }

  yg_parse_args <- function(args) {
    opts <- list(kernel_id = "", response_address = "", public_key = "", port_range = "0..0",
                 spark_context_initialization_mode = "none", transport_encryption = "curve")
    i <- 1L
    while (i < length(args)) {
      name <- gsub("-", "_", sub("^--", "", args[[i]]))
      if (!name %in% names(opts)) stop("unknown option ", args[[i]])
      opts[[name]] <- args[[i + 1L]]
      i <- i + 2L
    }
    for (req in c("kernel_id", "response_address", "public_key")) {
      if (!nzchar(opts[[req]])) stop("--", gsub("_", "-", req), " is required")
    }
    if (!opts$spark_context_initialization_mode %in% c("lazy", "eager", "none")) {
      stop("--spark-context-initialization-mode must be lazy, eager or none")
    }
    if (!opts$transport_encryption %in% c("curve", "none")) stop("--transport-encryption must be curve or none")
    opts
  }

  yg_port_range <- function(spec) {
    parts <- strsplit(spec, "..", fixed = TRUE)[[1]]
    lo <- suppressWarnings(as.integer(parts[1]))
    hi <- suppressWarnings(as.integer(parts[2]))
    if (length(parts) != 2L || is.na(lo) || is.na(hi) || (lo != 0L || hi != 0L) && !(1L <= lo && lo <= hi && hi <= 65535L)) {
      stop("bad --port-range ", spec)
    }
    c(lo, hi)
  }

  # The address the kernel binds and advertises: loopback when the gateway is on this host,
  # else this host's first address (`hostname -I`), else its name's address. Never 0.0.0.0.
  yg_reachable_ip <- function(response_address) {
    host <- gsub("^\\[|\\]$", "", sub(":[0-9]+$", "", response_address))
    if (host %in% c("127.0.0.1", "localhost")) return("127.0.0.1")
    if (host == "::1") return("::1")
    out <- tryCatch(suppressWarnings(system2("hostname", "-I", stdout = TRUE, stderr = FALSE)),
                    error = function(e) character(0))
    ips <- strsplit(trimws(paste(out, collapse = " ")), " +")[[1]]
    ips <- ips[nzchar(ips) & !grepl(":", ips, fixed = TRUE)]
    if (length(ips) > 0L) return(ips[1])
    resolved <- tryCatch(utils::nsl(Sys.info()[["nodename"]]), error = function(e) NULL)
    if (!is.null(resolved)) return(resolved)
    "127.0.0.1"
  }

  yg_random_key <- function() {
    con <- file("/dev/urandom", "rb", raw = TRUE)
    on.exit(close(con))
    paste(format(as.hexmode(as.integer(readBin(con, "raw", 32L))), width = 2L), collapse = "")
  }

  # ---------------------------------------------------------------------------- Spark

  yg_spark <- new.env(parent = emptyenv())

  yg_spark_start <- function(mode) {
    yg_spark$mode <- mode
    yg_spark$sparkr <- requireNamespace("SparkR", quietly = TRUE)
    if (mode == "none") return(invisible())
    yg_spark$client <- rb_connect()
    # SparkContext.getOrCreate() is the slow part (seconds); SparkR's own session creation later
    # finds this context (RRDD.createSparkContext calls getOrCreate too).
    rb_send(yg_spark$client, TRUE, "org.apache.spark.SparkContext", "getOrCreate", list(),
            function(value, error) {
              yg_spark$context <- value
              yg_spark$error <- error
            })
    yg_log("SparkContext requested from the JVM (", mode, ")")
    reg.finalizer(yg_spark, function(e) yg_spark_stop(), onexit = TRUE)
    if (mode == "eager") yg_spark_ready()
    invisible()
  }

  # Wait for the SparkContext and build the user's handles; returns the environment.
  yg_spark_ready <- function() {
    if (!is.null(yg_spark$jsc)) return(yg_spark)
    rb_wait(yg_spark$client)
    if (!is.null(yg_spark$error)) stop("the SparkContext failed to start: ", yg_spark$error, call. = FALSE)
    if (yg_spark$sparkr) {
      yg_spark$session <- SparkR::sparkR.session()
      yg_spark$jsc <- get(".sparkRjsc", envir = SparkR:::.sparkREnv)
    } else {
      cl <- yg_spark$client
      yg_spark$session <- rb_method(cl, rb_static(cl, "org.apache.spark.sql.SparkSession", "builder"), "getOrCreate")
      yg_spark$jsc <- rb_static(cl, "org.apache.spark.api.java.JavaSparkContext", "fromSparkContext", yg_spark$context)
      attr(yg_spark$session, "jclass") <- "org.apache.spark.sql.SparkSession"
      attr(yg_spark$jsc, "jclass") <- "org.apache.spark.api.java.JavaSparkContext"
    }
    yg_log("SparkContext ready (application", rb_method(yg_spark$client, yg_spark$context, "applicationId"), ")")
    yg_spark
  }

  yg_spark_stop <- function() {
    if (is.null(yg_spark$client) || isTRUE(yg_spark$client$broken) || isTRUE(yg_spark$stopped)) return(invisible())
    yg_spark$stopped <- TRUE
    # At exit (often right after the gateway's SIGINT): an interrupt here would cut the
    # RBackend stream and leave a driver that never registered, i.e. a FAILED application.
    suspendInterrupts(tryCatch({
      rb_wait(yg_spark$client)
      if (!is.null(yg_spark$context)) rb_method(yg_spark$client, yg_spark$context, "stop")
      yg_log("SparkContext stopped")
    }, error = function(e) yg_log("stopping Spark failed:", conditionMessage(e))))
    invisible()
  }

  # What the user sees: `sc`, `spark` (promises: forcing them waits for the context), and
  # jcall()/jstatic() to use JVM handles without SparkR.
  yg_spark_bind <- function(target) {
    if (yg_spark$mode == "none") return(invisible())
    delayedAssign("sc", yg_spark_ready()$jsc, assign.env = target)
    delayedAssign("spark", yg_spark_ready()$session, assign.env = target)
    if (yg_spark$sparkr) return(invisible())
    api <- attach(NULL, name = "yarn_gateway:spark")
    assign("jcall", function(obj, method, ...) rb_method(yg_spark_ready()$client, obj, method, ...), envir = api)
    assign("jstatic", function(class_name, method, ...) rb_static(yg_spark_ready()$client, class_name, method, ...),
           envir = api)
    assign("print.rb_jobj", function(x, ...) {
      cat("<JVM object ", if (is.null(attr(x, "jclass"))) "" else paste0(attr(x, "jclass"), " "), "id=", x$id,
          "> (SparkR is not installed: use jcall()/jstatic())\n", sep = "")
      invisible(x)
    }, envir = api)
    invisible()
  }

  yg_notice <- function() {
    if (yg_spark$mode == "none") return("Spark is not initialized (spark_context_initialization_mode = none).")
    if (yg_spark$sparkr) return("")
    paste("Note: the SparkR package is not installed on this cluster, so only plain R is available;",
          "`sc` and `spark` are JVM handles (jcall(sc, \"sparkUser\"), jstatic(class, method, ...)).")
  }

  # ---------------------------------------------------------------------------- kernel

  # IRkernel's Kernel with one change: each ZMQ socket binds itself at a random free port in
  # the range (retrying on collisions) instead of at ports from a connection file, and the
  # first execution shows a one-line notice.
  yg_kernel_class <- function() {
    ns <- asNamespace("IRkernel")
    where <- new.env(parent = ns)  # finds the non-exported Kernel class; ns itself is locked
    suppressMessages(methods::setRefClass("YarnGatewayKernel", contains = "Kernel", where = where,
      fields = list(notice = "character"),
      methods = list(initialize = function(info, bind, notice_text = "") {
        ns <- asNamespace("IRkernel")  # RC methods run in the object's environment, not this one
        notice <<- notice_text
        connection_info <<- info
        zmqctx <<- pbdZMQ::zmq.ctx.new()
        st <- pbdZMQ::ZMQ.ST()
        sockets <<- list(hb = pbdZMQ::zmq.socket(zmqctx, st$REP), iopub = pbdZMQ::zmq.socket(zmqctx, st$PUB),
                         control = pbdZMQ::zmq.socket(zmqctx, st$ROUTER),
                         stdin = pbdZMQ::zmq.socket(zmqctx, st$ROUTER), shell = pbdZMQ::zmq.socket(zmqctx, st$ROUTER))
        for (router in sockets[c("control", "stdin", "shell")]) {
          pbdZMQ::zmq.setsockopt(router, pbdZMQ::ZMQ.SO()$ROUTER_HANDOVER, 1L)
        }
        for (name in names(sockets)) connection_info[[paste0(name, "_port")]] <<- bind(sockets[[name]])
        executor <<- ns$Executor$new(send_response = .self$send_response, handle_stdin = .self$handle_stdin,
                                     abort_queued_messages = .self$abort_queued_messages)
        comm_manager <<- ns$CommManager$new(send_response = .self$send_response)
        assign("comm_manager", comm_manager, envir = ns$runtime_env)
        if (nzchar(notice)) {
          plain_execute <- executor$execute
          ex_env <- as.environment(executor)
          shown <- FALSE
          self <- .self
          assign("execute", function(request) {
            if (!shown) {
              shown <<- TRUE
              self$send_response("stream", request, "iopub", list(name = "stderr", text = paste0(self$notice, "\n")))
            }
            plain_execute(request)
          }, envir = ex_env)
        }
      })))
  }

  # A bind function for yg_kernel_class(): random ports in [lo, hi], never probe-and-rebind.
  yg_binder <- function(ip, range) {
    host <- if (grepl(":", ip, fixed = TRUE)) paste0("[", ip, "]") else ip
    quiet <- pbdZMQ::ZMQ.MC(warning.at.error = FALSE, stop.at.error = FALSE)
    function(socket) {
      if (all(range == 0L)) {
        pbdZMQ::zmq.bind(socket, paste0("tcp://", host, ":*"), MC = pbdZMQ::ZMQ.MC())
        endpoint <- pbdZMQ::zmq.getsockopt(socket, pbdZMQ::ZMQ.SO()$LAST_ENDPOINT, strrep(" ", 256L))
        return(as.integer(sub(".*:", "", trimws(endpoint))))
      }
      candidates <- range[1]:range[2]
      for (port in candidates[sample.int(length(candidates))]) {
        ret <- pbdZMQ::zmq.bind(socket, paste0("tcp://", host, ":", port), MC = quiet)
        if (identical(as.integer(ret), 0L)) return(port)
      }
      stop("no free port left in ", range[1], "..", range[2], " on ", ip)
    }
  }

  yg_python <- function() Sys.getenv("PYSPARK_PYTHON", Sys.getenv("PYSPARK_DRIVER_PYTHON", "python3"))

  # Whether the helper can run the CurveZMQ proxy: the container's Python has a pyzmq with CURVE.
  yg_curve_available <- function() {
    status <- tryCatch(suppressWarnings(system2(yg_python(), c("-c", shQuote(
      "import sys, zmq; sys.exit(0 if zmq.has('curve') else 3)")), stdout = FALSE, stderr = FALSE)),
      error = function(e) 1L)
    identical(as.integer(status), 0L)
  }

  yg_start_helper <- function(dir, opts, token, info, proxy_ip) {
    python <- yg_python()
    timeout <- suppressWarnings(as.numeric(Sys.getenv("KERNEL_LAUNCH_TIMEOUT", "120")))
    if (is.na(timeout) || timeout < 5) timeout <- 120
    argv <- c(python, file.path(dir, "launch_r_helper.py"), "--kernel-id", opts$kernel_id,
              "--response-address", opts$response_address, "--public-key", opts$public_key,
              "--port-range", opts$port_range, "--r-pid", Sys.getpid(), "--launch-timeout", timeout,
              "--transport-encryption", opts$transport_encryption, "--proxy-ip", proxy_ip)
    # exec: the helper (through env) replaces the shell, so it is this process's child and sees our
    # pid. PYTHONPATH: Python puts the script's resolved directory first on sys.path, and YARN's
    # link for launch_r_helper.py points into a cache directory without launcher_protocol.py.
    pythonpath <- paste(c(dir, Sys.getenv("PYTHONPATH")[nzchar(Sys.getenv("PYTHONPATH"))]), collapse = ":")
    helper <- pipe(paste("exec env", shQuote(paste0("PYTHONPATH=", pythonpath)), paste(shQuote(argv), collapse = " ")),
                   open = "w")
    line <- jsonlite::toJSON(list(launch_token = token, connection_info = info), auto_unbox = TRUE)
    writeLines(line, helper)
    flush(helper)
    helper  # kept open for the kernel's lifetime: its EOF tells the helper that R is gone
  }

  # IRkernel catches SIGINT only while it waits for a message and while a cell runs. One that
  # lands while it answers a request (sending a reply or its idle status) -- the user pressing
  # Interrupt as a cell ends, or the gateway interrupting before a shutdown -- would reach the
  # top level: Rscript quits with status 1 and YARN marks the application FAILED. Such an
  # interrupt is resumed where it struck (nothing unwound, no message half sent); should R offer
  # no resume, the main loop is entered again.
  #
  # A SIGINT can also interrupt pbdZMQ between the parts of a message (R_zmq_msg_recv: EINTR):
  # IRkernel then gets the parts out of step and wire_to_msg stops on the signature. That message
  # is dropped (its client gets no reply) and the kernel goes on; the rest of its parts, read next
  # as a message of their own, fail the same check once more. Any other error ends R as before.
  yg_run_kernel <- function(kernel) {
    dropped <- 0L
    repeat {
      again <- tryCatch(withCallingHandlers({
        kernel$run()
        FALSE
      }, interrupt = function(e) {
        if (!is.null(findRestart("resume"))) invokeRestart("resume")
      }), interrupt = function(e) TRUE, error = function(e) {
        call <- paste(deparse(conditionCall(e)), collapse = " ")
        if (!grepl("wire_to_msg", call, fixed = TRUE) || dropped >= 1000L) stop(e)
        dropped <<- dropped + 1L
        yg_log("a message arrived out of step (receive interrupted by a signal): dropped")
        TRUE
      })
      if (!isTRUE(again)) return(invisible())
      yg_log("interrupt between requests: main loop entered again")
    }
  }

  yg_main <- function() {
    opts <- yg_parse_args(commandArgs(trailingOnly = TRUE))
    token <- Sys.getenv("KERNEL_LAUNCH_TOKEN")
    Sys.unsetenv("KERNEL_LAUNCH_TOKEN")
    if (!nzchar(token)) stop("KERNEL_LAUNCH_TOKEN is not set; the gateway must provide it")
    dir <- yg_script_dir()
    sys.source(file.path(dir, "rbackend_client.R"), envir = yg_env)
    range <- yg_port_range(opts$port_range)
    mode <- opts$spark_context_initialization_mode
    if (mode == "none" && nzchar(Sys.getenv("CONTAINER_ID"))) {
      yg_log("mode 'none' inside a YARN container: requesting a SparkContext anyway (lazy), or YARN would",
             "kill the application after spark.yarn.am.waitTime")
      mode <- "lazy"
    }
    suppressMessages(loadNamespace("IRkernel"))
    yg_spark_start(mode)
    yg_spark_bind(globalenv())
    ip <- yg_reachable_ip(opts$response_address)
    if (opts$transport_encryption == "curve" && !yg_curve_available()) {
      yg_log("WARNING: the container's Python (", yg_python(), ") has no pyzmq with CurveZMQ: the kernel's ports",
             "use plain ZMQ (HMAC-signed, readable on the network). Install pyzmq with libsodium on the cluster.")
      opts$transport_encryption <- "none"
    }
    # With the proxy, the kernel listens on loopback only (any free port: not network-facing).
    kernel_ip <- if (opts$transport_encryption == "curve") "127.0.0.1" else ip
    bind <- if (opts$transport_encryption == "curve") yg_binder(kernel_ip, c(0L, 0L)) else yg_binder(ip, range)
    info <- list(ip = kernel_ip, transport = "tcp", signature_scheme = "hmac-sha256", key = yg_random_key(),
                 kernel_name = Sys.getenv("KERNEL_SPEC_NAME", "ir"))
    kernel <- yg_kernel_class()$new(info = info, bind = bind, notice_text = yg_notice())
    info <- kernel$connection_info
    yg_log("kernel", opts$kernel_id, "listening on", kernel_ip, paste(names(info)[grepl("_port$", names(info))],
           unlist(info[grepl("_port$", names(info))]), sep = "=", collapse = " "),
           if (opts$transport_encryption == "curve") paste("(CurveZMQ proxy on", ip, "in", opts$port_range, ")") else "")
    helper <- yg_start_helper(dir, opts, token, info, ip)
    rm(token, info)
    options(yarn_gateway.helper = helper)
    yg_run_kernel(kernel)
  }

  yg_main()
})
