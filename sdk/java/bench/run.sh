#!/bin/sh
# The Java SDK's bench program for plum-bench --external (see SdkBench.java): run from source
# (java's single-file launcher) against the SDK's compiled classes (`mvn ... package` first) and
# Debian's Jackson jars (or CLASSPATH_EXTRA).
here=$(cd "$(dirname "$0")" && pwd)
repo=${MAVEN_REPO:-/usr/share/maven-repo}/com/fasterxml/jackson/core
cp="$here/../target/classes:$repo/jackson-databind/2.14.0/jackson-databind-2.14.0.jar"
cp="$cp:$repo/jackson-core/2.14.1/jackson-core-2.14.1.jar:$repo/jackson-annotations/2.14.0/jackson-annotations-2.14.0.jar"
exec java -cp "$cp${CLASSPATH_EXTRA:+:$CLASSPATH_EXTRA}" "$here/SdkBench.java" "$@"
