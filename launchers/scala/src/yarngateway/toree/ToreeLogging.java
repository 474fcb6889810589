package yarngateway.toree;

import java.lang.reflect.Method;

/**
 * Keeps the kernel key out of the container's log. Toree 0.5's bootstrap logs through one logger,
 * {@code org.apache.toree.Main$$anon$1} (the anonymous {@code KernelBootstrap} that {@code Main} builds;
 * {@code StandardBareInitialization} is one of its traits), and that logger prints the whole connection
 * profile, {@code key} included, at INFO ("Connection Profile: {...}") and the key alone at DEBUG
 * ("Key = ..."). Spark's log4j2 sends INFO to the container's stderr, which YARN keeps and aggregates.
 * No other Toree logger prints the key, the profile or its config (checked in the 0.5.0 assembly).
 *
 * <p>So that one logger is raised to WARN before Toree starts, through log4j2's
 * {@code Configurator.setLevel(String, Level)}, by reflection: the launcher compiles against Toree's
 * assembly only, and Spark 3.5 brings log4j2 at run time. Toree's other loggers (the message relay, the
 * interpreters, {@code StandardComponentInitialization}) keep their levels; the bootstrap's own INFO
 * lines (versions, plugins loaded, "Shutting down kernel") go with it. Whether it worked is read back
 * through slf4j, the API Toree logs with, so another logging backend is noticed too.
 */
final class ToreeLogging {
    /** The logger of Toree 0.5's bootstrap, the one that logs the connection profile. */
    static final String PROFILE_LOGGER = "org.apache.toree.Main$$anon$1";

    private ToreeLogging() {
    }

    /**
     * Raise {@link #PROFILE_LOGGER} to WARN. Returns null when that logger no longer logs INFO or DEBUG,
     * else why not (never the key: a reflection error's class and message only).
     */
    static String quietProfileLogger() {
        String why = null;
        try {
            Class<?> level = Class.forName("org.apache.logging.log4j.Level");
            Class<?> configurator = Class.forName("org.apache.logging.log4j.core.config.Configurator");
            Method setLevel = configurator.getMethod("setLevel", String.class, level);
            setLevel.invoke(null, PROFILE_LOGGER, level.getField("WARN").get(null));
        } catch (ReflectiveOperationException | LinkageError | RuntimeException e) {
            Throwable cause = e.getCause() != null ? e.getCause() : e;
            why = cause.getClass().getSimpleName() + (cause.getMessage() == null ? "" : ": " + cause.getMessage());
        }
        org.slf4j.Logger logger = org.slf4j.LoggerFactory.getLogger(PROFILE_LOGGER);
        if (!logger.isInfoEnabled() && !logger.isDebugEnabled()) {
            return null;
        }
        return why != null ? why : "the logger still logs INFO (slf4j is bound to "
                + org.slf4j.LoggerFactory.getILoggerFactory().getClass().getName() + ", not log4j2?)";
    }
}
