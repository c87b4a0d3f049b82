# bench/report.sh runs this in the results directory: the PNGs of the .dat
# files bench/report.py wrote. Bars: median; thin line: to p95.
if (strstrt(GPVAL_TERMINALS, "pngcairo") > 0) {
  set terminal pngcairo size 1100,560 font "sans,10"
} else {
  set terminal png size 1100,560
}
set style fill solid 0.55 border -1
set grid xtics
set key off
set ytics nomirror
set yrange [*:*] reverse
set offsets 0, 0, 0.6, 0.6
set lmargin 46

have_file(f) = int(system("test -f " . f . " && echo 1 || echo 0"))

# bars(file): a horizontal bar per row of file (label median p95 min max).
bars(f) = sprintf("plot '%s' using 2:0:(xmin):2:($0-0.35):($0+0.35):ytic(1) with boxxyerror lc rgb '#4a7ab5', '' using 2:0:($3-$2):(0) with vectors nohead lw 2 lc rgb '#222222', '' using 2:0:(sprintf(' %%.2f', $2)) with labels left offset 0.5,0.6 font ',8'", f)

if (have_file("pod.dat")) {
  set output "pod.png"
  set title "One pod, whole process: install the default dual-stack capture into a fresh namespace"
  set logscale x
  set xlabel "ms per pod (log scale)"
  xmin = 0.1
  eval bars("pod.dat")
  unset logscale x
}
if (have_file("inproc.dat")) {
  set output "inproc.png"
  set title "In-process apply with each backend, against nft -f started the same way (setns + exec)"
  set logscale x
  set xlabel "ms (log scale)"
  xmin = 0.01
  eval bars("inproc.dat")
  unset logscale x
}
if (have_file("data-conn.dat")) {
  set output "dataplane-conn.png"
  set title "Data plane: new connection + one 64-byte request/response, client → pod"
  set xlabel "ms"
  xmin = 0
  set xrange [0:*]
  eval bars("data-conn.dat")
  set output "dataplane-req.png"
  set title "Data plane: one 64-byte request/response on an open connection"
  eval bars("data-req.dat")
  set xrange [*:*]
}

set lmargin
set offsets 0, 0, 0, 0
set yrange [*:*] noreverse
set key top left
set grid ytics
if (have_file("scale.dat")) {
  set output "scale.png"
  set title "Scale: weir-cni ADD, pod after pod, every namespace kept (running median of 50)"
  set xlabel "pod number (per backend)"
  set ylabel "ms per pod"
  set yrange [0:*]
  plot for [i=2:7] "scale.dat" using 1:i with lines lw 2 title columnhead(i)
  set yrange [*:*]
}
if (have_file("scale-ratio.dat")) {
  set output "scale-ratio.png"
  set title "Scale, 1 at a time: each ADD over /bin/true timed right after it in the same namespace (running median of 50)"
  set xlabel "pod number (per backend)"
  set ylabel "ADD / /bin/true"
  set yrange [0:*]
  plot for [i=2:3] "scale-ratio.dat" using 1:i with lines lw 2 title columnhead(i)
  set yrange [*:*]
}
if (have_file("node.dat")) {
  set output "node.png"
  set title "weir-node: one reconcile pass over the pods of a private containerd"
  set xlabel "pods"
  set ylabel "ms per pass"
  set yrange [0:*]
  plot "node.dat" using 1:2 with linespoints lw 2 pt 7 title "first pass (repairs uncaptured pods in place)", \
       "" using 1:3 with linespoints lw 2 pt 5 title "steady pass (nothing to repair)"
}
