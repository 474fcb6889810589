# A minimal client of Spark's RBackend protocol, in base R (no SparkR needed).
#
# Spark's RRunner (spark-submit <file>.R) starts the JVM side, org.apache.spark.api.r.RBackend,
# on localhost and passes EXISTING_SPARKR_BACKEND_PORT and SPARKR_BACKEND_AUTH_SECRET to R.
# Wire format, as implemented by the JVM (RBackend / RBackendAuthHandler / RBackendHandler /
# SerDe), written here from that description:
#
# * every request is a frame: 4-byte big-endian length, then the body;
# * the first frame on a connection is the secret's UTF-8 bytes and a NUL (an R string,
#   whose length prefix is the frame length); the JVM answers with a JVM string ("ok");
# * an R string is a 4-byte length (bytes + 1), the UTF-8 bytes and a NUL; a JVM string is
#   a 4-byte length and the bytes (a trailing NUL is tolerated);
# * a call body is: isStatic (int 0/1), object id or class name (string), method name
#   (string; "<init>" for a constructor), argument count (int), arguments (1 type byte +
#   value each: n NULL, c string, i int, d double, b logical-as-int, j object id);
# * the answer is a status int: +1 is a keep-alive the JVM sends during long calls (skip
#   it), 0 is followed by one typed value, anything else by an error string.
#
# One request is in flight per connection at a time. rb_send() writes a request without
# waiting; its answer is read (in order) by the next rb_call()/rb_wait(), so a slow call
# such as creating the SparkContext runs in the JVM while R does something else.

rb_connect <- function(port = Sys.getenv("EXISTING_SPARKR_BACKEND_PORT"),
                       secret = Sys.getenv("SPARKR_BACKEND_AUTH_SECRET"), timeout = 6000) {
  if (!nzchar(port)) stop("EXISTING_SPARKR_BACKEND_PORT is not set: not running under spark-submit")
  if (!nzchar(secret)) stop("SPARKR_BACKEND_AUTH_SECRET is not set")
  con <- socketConnection(host = "localhost", port = as.integer(port), server = FALSE,
                          blocking = TRUE, open = "wb", timeout = timeout)
  client <- new.env(parent = emptyenv())
  client$con <- con
  client$pending <- list()   # handlers for answers not read yet, oldest first
  client$broken <- FALSE
  # An R string's own length prefix doubles as the frame length: the body is secret + NUL.
  writeBin(rb_string_raw(secret), con)
  flush(con)
  reply <- rb_read_string(con)
  if (!identical(reply, "ok")) {
    close(con)
    stop("the Spark RBackend refused the auth secret")
  }
  client
}

rb_int_raw <- function(x) writeBin(as.integer(x), raw(), size = 4L, endian = "big")

rb_string_raw <- function(s) {
  bytes <- charToRaw(enc2utf8(as.character(s)))
  c(rb_int_raw(length(bytes) + 1L), bytes, as.raw(0L))
}

rb_arg_raw <- function(x) {
  if (is.null(x)) return(charToRaw("n"))
  if (inherits(x, "rb_jobj")) return(c(charToRaw("j"), rb_string_raw(x$id)))
  if (length(x) != 1L) stop("only scalar arguments (or JVM objects) are supported")
  if (is.character(x)) return(c(charToRaw("c"), rb_string_raw(x)))
  if (is.logical(x)) return(c(charToRaw("b"), rb_int_raw(isTRUE(x))))
  if (is.integer(x)) return(c(charToRaw("i"), rb_int_raw(x)))
  if (is.numeric(x)) return(c(charToRaw("d"), writeBin(as.double(x), raw(), size = 8L, endian = "big")))
  stop("unsupported argument type: ", class(x)[1])
}

rb_write_frame <- function(con, body) {
  # One write per frame (length + body) so Nagle never splits a request from its header.
  writeBin(c(rb_int_raw(length(body)), body), con)
  flush(con)
}

rb_read_exact <- function(con, n) {
  if (n == 0L) return(raw(0))
  out <- readBin(con, "raw", n)
  if (length(out) != n) stop("the Spark RBackend closed the connection")
  out
}

rb_read_int <- function(con) readBin(rb_read_exact(con, 4L), "integer", size = 4L, endian = "big")

rb_read_string <- function(con) {
  bytes <- rb_read_exact(con, rb_read_int(con))
  while (length(bytes) > 0L && bytes[length(bytes)] == as.raw(0L)) bytes <- bytes[-length(bytes)]
  s <- rawToChar(bytes)
  Encoding(s) <- "UTF-8"
  s
}

rb_read_typed <- function(con, type) {
  switch(type,
    n = NULL,
    i = rb_read_int(con),
    d = readBin(rb_read_exact(con, 8L), "double", size = 8L, endian = "big"),
    b = rb_read_int(con) != 0L,
    c = rb_read_string(con),
    D = as.Date(rb_read_string(con)),
    t = as.POSIXct(readBin(rb_read_exact(con, 8L), "double", size = 8L, endian = "big"), origin = "1970-01-01"),
    r = rb_read_exact(con, rb_read_int(con)),
    j = structure(list(id = rb_read_string(con)), class = "rb_jobj"),
    l = lapply(seq_len(rb_read_int(con)), function(i) rb_read_object(con)),
    a = {
      elem <- rawToChar(rb_read_exact(con, 1L))
      unlist(lapply(seq_len(rb_read_int(con)), function(i) rb_read_typed(con, elem)))
    },
    stop("unsupported value type '", type, "' from the Spark RBackend"))
}

rb_read_object <- function(con) rb_read_typed(con, rawToChar(rb_read_exact(con, 1L)))

# Read one answer: skip keep-alives, raise the JVM's error, or return the value.
rb_read_answer <- function(client) {
  con <- client$con
  ok <- FALSE
  on.exit(if (!ok) client$broken <- TRUE)  # interrupted mid-answer: the stream is out of step
  repeat {
    status <- rb_read_int(con)
    if (status != 1L) break
  }
  if (status != 0L) {
    msg <- rb_read_string(con)
    ok <- TRUE
    stop("JVM error: ", msg, call. = FALSE)
  }
  value <- rb_read_object(con)
  ok <- TRUE
  value
}

rb_request <- function(is_static, target, method, args) {
  c(rb_int_raw(is_static), rb_string_raw(target), rb_string_raw(method), rb_int_raw(length(args)),
    unlist(lapply(args, rb_arg_raw), use.names = FALSE))
}

# Send a call without reading its answer; `handler(value, error)` gets it later.
rb_send <- function(client, is_static, target, method, args = list(), handler = function(value, error) NULL) {
  if (client$broken) stop("the connection to the Spark RBackend is out of step; restart the kernel")
  rb_write_frame(client$con, rb_request(is_static, target, method, args))
  client$pending[[length(client$pending) + 1L]] <- handler
  invisible(NULL)
}

# Read every outstanding answer (oldest first) and hand each to its handler.
rb_wait <- function(client) {
  while (length(client$pending) > 0L) {
    handler <- client$pending[[1L]]
    result <- tryCatch(list(value = rb_read_answer(client), error = NULL),
                       error = function(e) list(value = NULL, error = conditionMessage(e)))
    client$pending[[1L]] <- NULL
    handler(result$value, result$error)
    if (client$broken) stop("lost the connection to the Spark RBackend: ", result$error)
  }
  invisible(NULL)
}

rb_call <- function(client, is_static, target, method, ...) {
  rb_wait(client)
  box <- new.env(parent = emptyenv())
  rb_send(client, is_static, target, method, list(...), function(value, error) {
    box$value <- value
    box$error <- error
  })
  rb_wait(client)
  if (!is.null(box$error)) stop(box$error, call. = FALSE)
  box$value
}

rb_static <- function(client, class_name, method, ...) rb_call(client, TRUE, class_name, method, ...)

rb_method <- function(client, obj, method, ...) {
  stopifnot(inherits(obj, "rb_jobj"))
  rb_call(client, FALSE, obj$id, method, ...)
}

rb_class_name <- function(client, obj) rb_method(client, rb_method(client, obj, "getClass"), "getName")
