-- Entry point called by the C host with the argument list; returns the exit status.
return function(argv)
  return require("ctcli.cli").main(argv)
end
